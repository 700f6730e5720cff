"""Selective scan (Mamba's S6 recurrence): a sequential reference and a chunked fast path.

The semantics are those of mamba's ``selective_scan_ref``, per channel ``d`` and state ``n``::

    delta = softplus(delta + delta_bias)           # bias and softplus optional
    x_t   = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t,      x_{-1} = 0
    y_t   = <x_t, C_t> + D * u_t                    # times silu(z_t) if z is given

Shapes: ``u``, ``delta``, ``z``: ``b x d x l``; ``A``: ``d x n``; ``B``, ``C``: ``b x n x l``
or grouped ``b x g x n x l`` (the ``d`` channels form ``g`` consecutive groups of ``d/g``
channels, each group sharing one ``B``/``C``); ``D``, ``delta_bias``: ``d``. Arithmetic is
fp32 (fp64 when ``u`` is fp64); the output has the dtype of ``u``.

:func:`selective_scan_chunked` solves the recurrence in closed form over short segments
of the sequence and carries the state between them (see its docstring);
:func:`selective_scan` picks a backend.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _checkpoint

from odssam.errors import OdsSamError
from odssam.models.shape_only import holds_no_data

__all__ = [
    "SCAN_BACKENDS",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_flops",
    "selective_scan_ref",
]

SCAN_BACKENDS = ("auto", "reference", "chunked", "triton")

# Largest spread of the cumulative log-decay allowed inside one closed-form chunk.
# Exponents then stay within +-50 (fp32 overflows past 88), which also keeps the
# closed form about as accurate as the sequential loop.
_MAX_LOG_DECAY_SPREAD = 100.0


def selective_scan_flops(b: int, d: int, l: int, n: int) -> int:  # noqa: E741 (mamba's names)
    """Analytic cost of one selective scan, as counted by Mamba's and VMamba's profilers.

    FLOP counters cannot see inside the recurrence; the convention is 9 operations per
    state element and time step (discretise A and B, update the state, read it out).

    Args:
        b: Batch size.
        d: Channels (all directions together for a cross-scan).
        l: Sequence length.
        n: State size per channel.

    Returns:
        ``9 * b * d * l * n``.
    """
    return 9 * b * d * l * n


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def check_scan_shapes(u, delta, A, B, C, D, z, delta_bias) -> int:
    """Validate the shapes of a scan's inputs (every backend's) and return the number of B/C groups."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(
            f"selective scan: u and delta must both be (b, d, l), got {tuple(u.shape)}, {tuple(delta.shape)}"
        )
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f"selective scan: A must be a real (d, n) tensor with d={dim}, got {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, mat in (("B", B), ("C", C)):
        if mat.dim() not in (3, 4) or mat.shape[0] != batch or mat.shape[-2:] != (n_state, length):
            raise ValueError(
                f"selective scan: {name} must be (b, n, l) or (b, g, n, l) and must match u and A "
                f"(b={batch}, n={n_state}, l={length}); got {tuple(mat.shape)}"
            )
        if mat.dim() == 4 and dim % mat.shape[1]:
            raise ValueError(
                f"selective scan: {name} must be (b, g, n, l) with g dividing d, but d={dim} is not divisible "
                f"by g={mat.shape[1]}"
            )
    groups_b = B.shape[1] if B.dim() == 4 else 1
    groups_c = C.shape[1] if C.dim() == 4 else 1
    if groups_b != groups_c:
        raise ValueError(f"selective scan: B and C must have the same groups, got {tuple(B.shape)}, {tuple(C.shape)}")
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and tuple(vec.shape) != (dim,):
            raise ValueError(f"selective scan: {name} must be ({dim},), got {tuple(vec.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective scan: z must be (b, d, l) like u, got {tuple(z.shape)}")
    return groups_b


def as_grouped(mat: torch.Tensor) -> torch.Tensor:
    """``b x n x l`` or ``b x g x n x l`` -> ``b x g x n x l``."""
    return mat.unsqueeze(1) if mat.dim() == 3 else mat


def _discretised_delta(delta, delta_bias, delta_softplus, dtype) -> torch.Tensor:
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


def _skip_and_gate(y, u, D, z) -> torch.Tensor:
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def selective_scan_ref(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan as a plain sequential loop over time: the definition.

    Args:
        u: Input, ``b x d x l``.
        delta: Step sizes before bias and softplus, ``b x d x l``.
        A: Diagonal state matrix per channel, ``d x n``.
        B: Input projection, ``b x n x l`` or grouped ``b x g x n x l``.
        C: Output projection, same shape as ``B``.
        D: Skip weight, ``d``, or None.
        z: Gate, ``b x d x l``, or None: the output is multiplied by ``silu(z)``.
        delta_bias: Added to ``delta`` before the softplus, ``d``, or None.
        delta_softplus: Apply softplus to ``delta + delta_bias``.

    Returns:
        ``y``, ``b x d x l``, in the dtype of ``u``.
    """
    groups = check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u)
    batch, dim, length = u.shape
    x_in = u.to(dtype)
    delta = _discretised_delta(delta, delta_bias, delta_softplus, dtype)
    A = A.to(dtype)
    # Give every channel its group's B and C: b x d x n x l.
    B = as_grouped(B).to(dtype).repeat_interleave(dim // groups, dim=1)
    C = as_grouped(C).to(dtype).repeat_interleave(dim // groups, dim=1)
    state = x_in.new_zeros(batch, dim, A.shape[1])
    outputs = []
    # unbind once: indexing step t of a full tensor would cost a full-size gradient per step.
    steps = zip(delta.unbind(-1), x_in.unbind(-1), B.unbind(-1), C.unbind(-1))
    for delta_t, u_t, B_t, C_t in steps:
        decay = torch.exp(delta_t[:, :, None] * A)
        state = decay * state + (delta_t * u_t)[:, :, None] * B_t
        outputs.append((state * C_t).sum(-1))
    y = torch.stack(outputs, dim=-1) if outputs else x_in.new_zeros(batch, dim, 0)
    return _skip_and_gate(y, x_in, D, z).to(u.dtype)


def _closed_form_chunk(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed form of the recurrence over one chunk of ``t`` steps.

    With ``S_t`` the cumulative log-decay ``sum_{0 < r <= t} delta_r A`` (the first
    step's decay is applied to the incoming state only), the recurrence unrolls to::

        x_t = exp(S_t) exp(delta_0 A) x_in + sum_{s <= t} exp(S_t - S_s) delta_s B_s u_s

    ``exp(S_t - S_s)`` is evaluated as ``exp(S_t - m) / exp(S_s - m)`` around the
    midpoint ``m`` of ``S``'s range; the caller keeps that range below
    ``_MAX_LOG_DECAY_SPREAD`` so neither factor can overflow.

    Args:
        u: Inputs, ``b x g x c x t`` (``g`` groups of ``c`` channels).
        delta: Discretised step sizes, ``b x g x c x t``.
        A: ``g x c x n``.
        B: ``b x g x t x n``.
        C: ``b x g x t x n``.
        state: State entering the chunk, ``b x g x c x n``.

    Returns:
        ``(y, state_out)``: ``y`` is ``<x_t, C_t>``, ``b x g x c x t``; ``state_out`` is
        the state after the last step, ``b x g x c x n``.
    """
    A = A[:, :, None, :]
    later_delta = F.pad(delta[..., 1:], (1, 0))
    log_decay = torch.cumsum(later_delta[..., None] * A, dim=-2)  # b x g x c x t x n
    with torch.no_grad():
        # exp(S_t - m) * exp(m - S_s) does not depend on m: no gradient through it.
        anchor = (log_decay.amax(-2, keepdim=True) + log_decay.amin(-2, keepdim=True)) / 2
    growth = torch.exp(log_decay - anchor)
    inputs = (delta * u)[..., None] * B[:, :, None]
    carried = torch.exp(anchor + delta[..., :1, None] * A) * state[..., None, :]
    states = growth * (torch.cumsum(inputs / growth, dim=-2) + carried)
    y = (states * C[:, :, None]).sum(-1)
    return y, states[..., -1, :]


def _doubling_chunk(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same chunk by a log-depth scan (Hillis-Steele) of the pairs ``(decay, input)``.

    Used where the decays are too steep for the closed form: it only multiplies decays
    (each <= 1 for a stable ``A``) and adds, so nothing can overflow, at about twice the
    closed form's work. Arguments and return value as :func:`_closed_form_chunk`.
    """
    decay = torch.exp(delta[..., None] * A[:, :, None, :])  # b x g x c x t x n
    inputs = (delta * u)[..., None] * B[:, :, None]
    # Fold the incoming state into the first step.
    inputs = torch.cat([inputs[..., :1, :] + decay[..., :1, :] * state[..., None, :], inputs[..., 1:, :]], dim=-2)
    length, span = inputs.shape[-2], 1
    while span < length:
        # After this round, step t holds the composition of steps t-2*span+1 .. t.
        combined = inputs[..., span:, :] + decay[..., span:, :] * inputs[..., :-span, :]
        inputs = torch.cat([inputs[..., :span, :], combined], dim=-2)
        if 2 * span < length:
            decay = torch.cat([decay[..., :span, :], decay[..., span:, :] * decay[..., :-span, :]], dim=-2)
        span *= 2
    y = (inputs * C[:, :, None]).sum(-1)
    return y, inputs[..., -1, :]


def _plan_chunks(delta: torch.Tensor, A: torch.Tensor, chunk_size: int) -> list[tuple[int, int, bool]]:
    """Cut ``[0, l)`` into chunks and say which ones the closed form can take.

    A chunk suits the closed form when, for every channel, ``sum |delta_r| max_n |A|``
    over its steps after the first stays below ``_MAX_LOG_DECAY_SPREAD``. Costs one
    device sync.

    Args:
        delta: Discretised step sizes, ``b x g x c x l``.
        A: ``g x c x n``.
        chunk_size: Steps per chunk.

    Returns:
        ``(start, end, closed_form)`` for each chunk, in order.
    """
    if delta.is_cuda and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "the chunked selective scan plans its chunks on the host, which a CUDA graph cannot record "
            "(model.prompt_encoder.ssm.scan_backend: use 'auto' or 'triton' on CUDA)"
        )
    length = delta.shape[-1]
    n_chunks = math.ceil(length / chunk_size)
    with torch.no_grad():
        rate = delta.abs() * A.abs().amax(-1)[..., None]  # bound on the log-decay per step
        padded = F.pad(rate, (0, n_chunks * chunk_size - length)).unflatten(-1, (n_chunks, chunk_size))
        spreads = padded[..., 1:].sum(-1).flatten(0, -2).amax(0).tolist()
    return [
        (i * chunk_size, min(length, (i + 1) * chunk_size), spread <= _MAX_LOG_DECAY_SPREAD)  # NaN: not closed
        for i, spread in enumerate(spreads)
    ]


def selective_scan_chunked(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False, chunk_size: int = 32, checkpoint: bool = False,
) -> torch.Tensor:
    """Selective scan in closed form over chunks of the sequence, in plain PyTorch.

    Inside a chunk the recurrence is unrolled with cumulative sums of ``delta * A`` (one
    vectorised pass instead of ``chunk_size`` steps); the state is carried from chunk to
    chunk. Only one chunk's ``b x d x chunk_size x n`` states exist at a time, instead of
    the ``b x d x l x n`` of a fully vectorised form. A chunk whose decays are steep
    enough to overflow the closed form is solved by a log-depth scan instead (see
    :func:`_plan_chunks`), so any input gives the reference's values. Same values and
    gradients as :func:`selective_scan_ref` up to rounding; differentiable by autograd.

    Args:
        u, delta, A, B, C, D, z, delta_bias, delta_softplus: As in
            :func:`selective_scan_ref`.
        chunk_size: Steps per chunk: longer chunks mean fewer but larger tensor
            operations; the closed form needs the decay over a chunk to stay moderate.
        checkpoint: Recompute each chunk in the backward pass instead of storing its
            intermediate ``b x d x chunk_size x n`` tensors (about ten per chunk), so
            training memory grows like ``b x d x l`` instead of ``b x d x l x n``.

    Returns:
        ``y``, ``b x d x l``, in the dtype of ``u``.
    """
    groups = check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"selective scan: chunk_size must be a positive integer, got {chunk_size!r}")
    if holds_no_data(u):  # shapes only (e.g. FLOP counting): nothing to compute
        return torch.empty_like(u)
    dtype = _compute_dtype(u)
    batch, dim, length = u.shape
    per_group = dim // groups
    x_in = u.to(dtype)
    delta = _discretised_delta(delta, delta_bias, delta_softplus, dtype)
    if length == 0:
        return x_in.new_zeros(batch, dim, 0).to(u.dtype)
    grouped = (batch, groups, per_group, length)
    x_grouped, delta_grouped = x_in.reshape(grouped), delta.reshape(grouped)
    A_grouped = A.to(dtype).reshape(groups, per_group, -1)
    # b x g x l x n: a chunk is then a slice along l with n contiguous.
    B_time = as_grouped(B).to(dtype).transpose(-1, -2)
    C_time = as_grouped(C).to(dtype).transpose(-1, -2)
    state = x_in.new_zeros(batch, groups, per_group, A.shape[1])
    needs_grad = any(t is not None and t.requires_grad for t in (u, delta, A, B, C))
    use_checkpoint = checkpoint and needs_grad and torch.is_grad_enabled()
    outputs = []
    for begin, end, closed_form in _plan_chunks(delta_grouped, A_grouped, chunk_size):
        solve = _closed_form_chunk if closed_form else _doubling_chunk
        args = (
            x_grouped[..., begin:end],
            delta_grouped[..., begin:end],
            A_grouped,
            B_time[:, :, begin:end],
            C_time[:, :, begin:end],
            state,
        )
        if use_checkpoint:
            y, state = _checkpoint(solve, *args, use_reentrant=False, preserve_rng_state=False)
        else:
            y, state = solve(*args)
        outputs.append(y)
    y = torch.cat(outputs, dim=-1).reshape(batch, dim, length)
    return _skip_and_gate(y, x_in, D, z).to(u.dtype)


@functools.lru_cache(maxsize=1)
def _load_triton() -> tuple[Callable | None, Callable[[torch.device], bool] | None, str]:
    """Import the Triton backend once; ``(scan, is_available, why_not)``."""
    try:
        from odssam.models import selective_scan_triton as module
    except Exception as error:  # a broken Triton install must not break the other backends
        return None, None, f"{type(error).__name__}: {error}"
    return module.selective_scan_triton, module.is_available, ""


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend that ``backend`` (a config value, ``auto`` included) runs on ``device``."""
    device = torch.device(device)
    if backend not in SCAN_BACKENDS:
        raise OdsSamError(
            f"unknown selective-scan backend {backend!r} (config key model.prompt_encoder.ssm.scan_backend); "
            f"choose one of {', '.join(SCAN_BACKENDS)}"
        )
    if backend == "auto":
        scan, available, _ = _load_triton()
        if device.type == "cuda" and scan is not None and available(device):
            return "triton"
        return "chunked"
    if backend == "triton":
        scan, available, why_not = _load_triton()
        if scan is None or not available(device):
            raise OdsSamError(
                f"selective-scan backend 'triton' cannot run on {device} tensors"
                f"{' (' + why_not + ')' if why_not else ''}; it needs Triton and a CUDA GPU. "
                "Set model.prompt_encoder.ssm.scan_backend to 'auto' or 'chunked'."
            )
    return backend


def scan_syncs_host(backend: str, device: torch.device | str) -> bool:
    """Whether the scan reads tensor values on the host on ``device``, so that a step using
    it cannot be recorded as a CUDA graph (the chunked backend plans its chunks there)."""
    return resolve_backend(backend, device) == "chunked"


def selective_scan(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False, backend: str = "auto", chunk_size: int = 32, checkpoint: bool = False,
) -> torch.Tensor:
    """Selective scan through the chosen backend.

    Args:
        u, delta, A, B, C, D, z, delta_bias, delta_softplus: As in
            :func:`selective_scan_ref`.
        backend: ``reference`` (sequential loop), ``chunked`` (closed form per chunk,
            CPU and GPU), ``triton`` (fused GPU kernel), or ``auto``: Triton for CUDA
            tensors when it imports, otherwise chunked.
        chunk_size: Steps per chunk of the chunked backend.
        checkpoint: Chunked backend: recompute chunks in the backward pass to save memory.

    Returns:
        ``y``, ``b x d x l``, in the dtype of ``u``.

    Raises:
        OdsSamError: Unknown backend, or ``triton`` requested where it cannot run.
    """
    chosen = resolve_backend(backend, u.device)
    if chosen == "triton":
        scan = _load_triton()[0]
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if chosen == "reference":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_chunked(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size=chunk_size, checkpoint=checkpoint
    )
