"""Multi-head attention of a SAM ViT block with decomposed relative positions, two backends.

:func:`rel_pos_attention` computes the attention of an official ``segment_anything`` block
from the block's ``qkv`` activations on the un-padded HxW tokens:

* ``triton`` (CUDA): the fused kernels of :mod:`odssam.models.fast_attention_kernels`, behind
  an opaque ``torch.library`` operator so that ``torch.compile`` calls them as they are. No
  window copies and no score matrix in memory.
* ``torch`` (any device, the reference): windows are formed explicitly and the
  relative-position terms are folded into the dot product, appending ``rel_h``/``rel_w`` to
  each query and the one-hot row/column of each key to each key, so one
  ``F.scaled_dot_product_attention`` call computes the scores without an additive mask.

Both compute the official function: ``softmax(scale q.k + rel_h[q, row(k)] + rel_w[q, col(k)]) v``
per window (or over the whole grid for global blocks), a padded token's key and value being the
``qkv`` bias (the official block pads the normalised tokens with zeros before ``qkv``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from odssam.models.fast_attention_kernels import TRITON_IMPORTED, launch_rel_attention, triton_supported


# --------------------------------------------------------------------------------------
# Relative-position tables
# --------------------------------------------------------------------------------------


def relative_position_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """Table of relative-position embeddings for queries and keys on a line of ``size``.

    Entry ``[i, j]`` is the embedding of offset ``i - j``; ``rel_pos`` holds offsets
    ``-(size-1) .. size-1`` (resampled linearly when it was trained for another length).

    Args:
        rel_pos: (2*S'-1)xC learned embeddings, S' the size they were trained for.
        size: Number of query (= key) positions S along the axis.

    Returns:
        SxSxC table.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        resampled = F.interpolate(rel_pos.t()[None].float(), size=length, mode="linear")
        rel_pos = resampled[0].t().to(rel_pos.dtype)
    positions = torch.arange(size, device=rel_pos.device)
    offsets = positions[:, None] - positions[None, :] + (size - 1)
    return rel_pos[offsets]


def _line_tables(rel_pos: torch.Tensor, window: int, extent: int) -> torch.Tensor:
    """Per-token table along one image axis: row ``t`` is the table of in-window position
    ``t % window``. Returns ``extent x window x C``."""
    table = relative_position_table(rel_pos, window)
    return table[torch.arange(extent, device=rel_pos.device) % window]


def exact_attention(attention: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The official ``Attention.forward`` of a SAM block, operation for operation.

    The one difference is where the relative-position indices are made: the official
    ``get_rel_pos`` builds them on the CPU and copies them to the device on every call, which
    a CUDA graph cannot record; :func:`relative_position_table` builds them on the device.
    The values are the same integers, so the output equals the official one bit for bit.

    Args:
        attention: An official ``segment_anything`` ``Attention`` module.
        x: BxHxWxC tokens (windows or the whole grid), already normalised.

    Returns:
        BxHxWxC output, ``proj`` included.
    """
    batch, height, width, _ = x.shape
    heads = attention.num_heads
    qkv = attention.qkv(x).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, batch * heads, height * width, -1).unbind(0)
    scores = (q * attention.scale) @ k.transpose(-2, -1)
    if attention.use_rel_pos:
        table_h = relative_position_table(attention.rel_pos_h, height)
        table_w = relative_position_table(attention.rel_pos_w, width)
        grid_q = q.reshape(batch * heads, height, width, q.shape[-1])
        rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, table_h)
        rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, table_w)
        scores = scores.view(batch * heads, height, width, height, width)
        scores = (scores + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).view(
            batch * heads, height * width, height * width
        )
    weights = scores.softmax(dim=-1)
    out = (weights @ v).view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return attention.proj(out)


# --------------------------------------------------------------------------------------
# torch backend (any device, the reference)
# --------------------------------------------------------------------------------------


def _partition(tokens: torch.Tensor, window: int) -> torch.Tensor:
    """BxHxWxD (H, W multiples of ``window``) -> (B*nW)x(window*window)xD."""
    batch, height, width, depth = tokens.shape
    tokens = tokens.view(batch, height // window, window, width // window, window, depth)
    return tokens.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, depth)


def _unpartition(windows: torch.Tensor, window: int, batch: int, height: int, width: int) -> torch.Tensor:
    """(B*nW)x(window*window)xD -> BxHxWxD, the inverse of :func:`_partition`."""
    depth = windows.shape[-1]
    windows = windows.view(batch, height // window, width // window, window, window, depth)
    return windows.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, depth)


def _attention_torch(
    qkv: torch.Tensor,
    num_heads: int,
    window_size: int,
    rel_pos_h: Optional[torch.Tensor],
    rel_pos_w: Optional[torch.Tensor],
    qkv_bias: Optional[torch.Tensor],
    scale: float,
    fold: Optional[bool] = None,
) -> torch.Tensor:
    """Attention with relative positions through ``F.scaled_dot_product_attention``.

    Args:
        qkv: BxHxWx3C output of the block's ``qkv`` linear layer.
        fold: Fold the relative terms into the dot product (no score-sized tensor; the choice
            on CUDA) or pass them as an additive mask (faster on CPUs, whose fused kernel is
            slow for the longer folded head dim). ``None``: fold on CUDA only.

    Returns:
        BxHxWxC attention output (before ``proj``).
    """
    if fold is None:
        fold = qkv.is_cuda
    batch, height, width, three_c = qkv.shape
    channels = three_c // 3
    head_dim = channels // num_heads
    if window_size > 0:
        padded_h = -(-height // window_size) * window_size
        padded_w = -(-width // window_size) * window_size
        if (padded_h, padded_w) != (height, width):
            # A padded token is zero after the norm, so its q/k/v are exactly the qkv bias.
            fill = qkv_bias if qkv_bias is not None else qkv.new_zeros(three_c)
            padded = fill.to(qkv.dtype).expand(batch, padded_h, padded_w, three_c).clone()
            padded[:, :height, :width] = qkv
            qkv = padded
        rows = cols = window_size
        tokens = _partition(qkv, window_size)
    else:
        padded_h, padded_w = height, width
        rows, cols = height, width
        tokens = qkv.reshape(batch, height * width, three_c)
    groups, length = tokens.shape[:2]
    q, k, v = tokens.view(groups, length, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    if rel_pos_h is not None and rel_pos_w is not None:
        table_h = relative_position_table(rel_pos_h, rows).to(q.dtype)
        table_w = relative_position_table(rel_pos_w, cols).to(q.dtype)
        grid_q = q.reshape(groups, num_heads, rows, cols, head_dim)
        rel_h = torch.einsum("gnijc,ikc->gnijk", grid_q, table_h).reshape(groups, num_heads, length, rows)
        rel_w = torch.einsum("gnijc,jkc->gnijk", grid_q, table_w).reshape(groups, num_heads, length, cols)
        if fold:
            # score(q, k) = scale q.k + rel_h[q, row(k)] + rel_w[q, col(k)]: append the terms to
            # q and the one-hot row/column of every key to k, then one SDPA call with scale 1.
            key_pos = torch.arange(length, device=q.device)
            one_hot = torch.cat(
                [F.one_hot(key_pos // cols, rows), F.one_hot(key_pos % cols, cols)], dim=-1
            ).to(q.dtype)
            q = torch.cat([q * scale, rel_h, rel_w], dim=-1)
            k = torch.cat([k, one_hot.expand(groups, num_heads, length, rows + cols)], dim=-1)
            out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        else:
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(groups, num_heads, length, length)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    else:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)

    out = out.transpose(1, 2).reshape(groups, length, channels)
    if window_size > 0:
        out = _unpartition(out, window_size, batch, padded_h, padded_w)
        return out[:, :height, :width]
    return out.view(batch, height, width, channels)


# --------------------------------------------------------------------------------------
# Triton backend (CUDA) and the backend choice
# --------------------------------------------------------------------------------------


def _attention_triton(
    qkv: torch.Tensor,
    num_heads: int,
    window_size: int,
    rel_pos_h: Optional[torch.Tensor],
    rel_pos_w: Optional[torch.Tensor],
    qkv_bias: Optional[torch.Tensor],
    scale: float,
) -> torch.Tensor:
    """Fused relative-position attention; same contract as :func:`_attention_torch`."""
    line_tables = None
    if rel_pos_h is not None and rel_pos_w is not None:
        height, width = qkv.shape[1:3]
        rows, cols = (window_size, window_size) if window_size > 0 else (height, width)
        line_tables = (_line_tables(rel_pos_h, rows, height), _line_tables(rel_pos_w, cols, width))
    return launch_rel_attention(qkv, line_tables, qkv_bias, num_heads, window_size, scale)


if TRITON_IMPORTED:
    # An opaque operator for torch.compile: Inductor fuses the norms and residual adds around
    # it and calls the Triton kernels as they are.
    @torch.library.custom_op("odssam::rel_pos_attention", mutates_args=())
    def _rel_pos_attention_op(
        qkv: torch.Tensor,
        rel_pos_h: Optional[torch.Tensor],
        rel_pos_w: Optional[torch.Tensor],
        qkv_bias: Optional[torch.Tensor],
        num_heads: int,
        window_size: int,
        scale: float,
    ) -> torch.Tensor:
        return _attention_triton(qkv, num_heads, window_size, rel_pos_h, rel_pos_w, qkv_bias, scale)

    @_rel_pos_attention_op.register_fake
    def _rel_pos_attention_fake(qkv, rel_pos_h, rel_pos_w, qkv_bias, num_heads, window_size, scale):
        batch, height, width, three_c = qkv.shape
        return qkv.new_empty(batch, height, width, three_c // 3)


def resolve_backend(backend: str, qkv: torch.Tensor, num_heads: int) -> str:
    """Pick the attention backend for a ``qkv`` tensor.

    Args:
        backend: ``auto``, ``triton`` or ``torch``.
        qkv: BxHxWx3C activations the attention will read.
        num_heads: Heads of the block.

    Returns:
        ``"triton"`` or ``"torch"``.

    Raises:
        ValueError: Unknown backend, or ``triton`` requested where it cannot run.
    """
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"unknown attention backend {backend!r}; expected auto, triton or torch")
    if backend == "torch":
        return "torch"
    head_dim = qkv.shape[-1] // (3 * num_heads)
    fits = (
        triton_supported(qkv.device)
        and qkv.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and head_dim >= 16
    )
    if backend == "triton" and not fits:
        raise ValueError(
            "the triton attention backend needs Triton, a CUDA tensor of float16/bfloat16/float32 "
            f"and a head dim >= 16 (got device {qkv.device}, dtype {qkv.dtype}, head dim {head_dim})"
        )
    return "triton" if fits else "torch"


def rel_pos_attention(
    qkv: torch.Tensor,
    num_heads: int,
    window_size: int,
    rel_pos_h: Optional[torch.Tensor],
    rel_pos_w: Optional[torch.Tensor],
    qkv_bias: Optional[torch.Tensor],
    scale: float,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-head attention of a SAM ViT block with decomposed relative positions.

    Args:
        qkv: BxHxWx3C output of the block's ``qkv`` linear layer on the un-padded tokens.
        num_heads: Number of heads (C = num_heads * head_dim).
        window_size: Side of the attention windows; 0 for global attention.
        rel_pos_h: (2S-1)xhead_dim embeddings along rows, S the window (or grid) side;
            ``None`` together with ``rel_pos_w`` for no relative positions.
        rel_pos_w: (2S-1)xhead_dim embeddings along columns.
        qkv_bias: 3C bias of the ``qkv`` layer: the q/k/v of a padded token (None: zeros).
        scale: Multiplier of q.k (1/sqrt(head_dim) in SAM).
        backend: ``auto`` (Triton on CUDA, else torch), ``triton`` or ``torch``.

    Returns:
        BxHxWxC attention output, before the block's ``proj`` layer.
    """
    if resolve_backend(backend, qkv, num_heads) == "triton":
        return _rel_pos_attention_op(qkv, rel_pos_h, rel_pos_w, qkv_bias, num_heads, window_size, scale)
    return _attention_torch(qkv, num_heads, window_size, rel_pos_h, rel_pos_w, qkv_bias, scale)
