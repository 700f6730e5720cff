"""OD-SSM: VMamba-style 2-D selective scan (SS2D) over K scan directions.

The 64x64 prompt grid is read as K sequences, one per scan direction (each a
permutation of the H*W positions), every direction gets its own selective-scan
parameters, and the K outputs are put back in place and summed (``cross_merge``).

Directions, in order (direction ``k + K/2`` is direction ``k`` reversed):

* K = 4 (VMamba): row-major, column-major, then both reversed.
* K = 8 (the omni-directional reading): row-major, column-major, anti-diagonal-major
  (anti-diagonals ``i + j = s`` for s = 0, 1, ..., each walked top to bottom),
  main-diagonal-major (diagonals ``j - i = s`` for s = W-1 down to -(H-1), i.e. from
  the top-right corner to the bottom-left one, each walked top-left to bottom-right),
  then the four reversed.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from odssam.config import SSMConfig
from odssam.errors import OdsSamError
from odssam.models.selective_scan import selective_scan, selective_scan_flops
from odssam.models.shape_only import real_tensors

__all__ = ["ODSSMBlock", "SS2D", "cross_merge", "cross_scan", "scan_orders", "ss2d_scan_flops"]

SCAN_DIRECTIONS = (4, 8)


def _check_directions(directions: int) -> None:
    if directions not in SCAN_DIRECTIONS:
        raise OdsSamError(
            f"OD-SSM scan directions must be 4 or 8 (config key model.prompt_encoder.ssm.directions), "
            f"got {directions!r}"
        )


@functools.lru_cache(maxsize=64)
def _scan_orders_cpu(height: int, width: int, directions: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode(False), real_tensors():
        # Cached tensors made under inference_mode could not be used by a later training step.
        return _build_scan_orders(height, width, directions)


def _build_scan_orders(height: int, width: int, directions: int) -> tuple[torch.Tensor, torch.Tensor]:
    cpu = torch.device("cpu")  # explicit, so building on the meta device still works
    positions = torch.arange(height * width, device=cpu)
    row, col = positions // width, positions % width
    forward = [positions, positions.view(height, width).t().reshape(-1)]
    if directions == 8:
        # Sort keys are unique: diagonal index first, then the row within it.
        anti_diagonal = (row + col) * height + row
        main_diagonal = (width - 1 - (col - row)) * height + row
        forward += [torch.argsort(anti_diagonal), torch.argsort(main_diagonal)]
    order = torch.stack(forward + [o.flip(0) for o in forward])
    inverse = torch.argsort(order, dim=1)
    return order, inverse


def scan_orders(height: int, width: int, directions: int, device: torch.device | str = "cpu"):
    """Scan orders of an ``height x width`` grid, cached per size and device.

    Args:
        height: Grid rows H.
        width: Grid columns W.
        directions: K, 4 or 8.
        device: Where the index tensors live.

    Returns:
        ``(order, inverse)``, both ``K x L`` int64 with L = H*W: step ``t`` of direction
        ``k`` visits the row-major position ``order[k, t]``; ``inverse`` undoes it
        (``order[k, inverse[k, p]] == p``).
    """
    _check_directions(directions)
    return _scan_orders_on(height, width, directions, torch.device(device))


@functools.lru_cache(maxsize=64)
def _scan_orders_on(height: int, width: int, directions: int, device: torch.device):
    order, inverse = _scan_orders_cpu(height, width, directions)
    with torch.inference_mode(False), real_tensors():
        return order.to(device), inverse.to(device)


def cross_scan(x: torch.Tensor, directions: int = 4) -> torch.Tensor:
    """Read a feature map as K sequences, one per scan direction.

    Args:
        x: ``B x C x H x W``.
        directions: K, 4 or 8.

    Returns:
        ``B x K x C x L`` with L = H*W.
    """
    batch, channels, height, width = x.shape
    order, _ = scan_orders(height, width, directions, x.device)
    flat = x.reshape(batch, 1, channels, height * width).expand(batch, directions, channels, -1)
    index = order[None, :, None, :].expand(batch, directions, channels, -1)
    return torch.gather(flat, -1, index)


def cross_merge(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Put each direction's sequence back in row-major order and sum the directions.

    Args:
        y: ``B x K x C x L`` with L = H*W.
        height: Grid rows H.
        width: Grid columns W.

    Returns:
        ``B x C x L``, row-major.
    """
    batch, directions, channels, length = y.shape
    if length != height * width:
        raise ValueError(f"cross_merge: sequence length {length} is not {height} x {width}")
    _, inverse = scan_orders(height, width, directions, y.device)
    index = inverse[None, :, None, :].expand(batch, directions, channels, -1)
    return torch.gather(y, -1, index).sum(1)


def _autocast_off(device: torch.device):
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()  # e.g. the meta device used for profiling


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


class SS2D(nn.Module):
    """VMamba's SS2D with K scan directions; ``B x d_model x H x W`` in and out.

    in_proj -> (x, z); x: depthwise conv + SiLU -> cross-scan -> selective scan with
    per-direction x_proj / dt_proj / A / D -> cross-merge -> LayerNorm; gate by SiLU(z);
    out_proj. The scan runs in fp32 even under autocast.

    Args:
        d_model: Input and output channels.
        cfg: Scan settings (directions, d_state, dt_rank, expand, d_conv, dt init range,
            backend, chunk size, checkpointing), read once here: the module keeps its own
            copies, so the config is never read (or changed) after the build.

    Attributes:
        scan_backend: Selective-scan backend of the forward pass (``auto``, ``chunked`` ...;
            :func:`odssam.export.graphs.export_friendly` switches it while exporting).
        chunk_size: Time steps per chunk of the chunked backend.
        scan_checkpoint: Chunked backend: recompute chunks in the backward pass.
        x_proj_weight: ``K x (R + 2N) x D_inner``: per direction, D_inner -> (dt, B, C).
        dt_projs_weight: ``K x D_inner x R``.
        dt_projs_bias: ``K x D_inner``, the softplus bias of delta.
        A_logs: ``K*D_inner x N``; ``A = -exp(A_logs)``.
        Ds: ``K*D_inner``, skip weights.
    """

    def __init__(self, d_model: int = 256, cfg: SSMConfig | None = None):
        super().__init__()
        cfg = cfg or SSMConfig()
        self.d_model = d_model
        self.d_inner = cfg.expand * d_model
        self.directions = cfg.directions
        self.d_state = cfg.d_state
        self.dt_rank = cfg.dt_rank
        self.dt_min, self.dt_max, self.dt_init_floor = cfg.dt_min, cfg.dt_max, cfg.dt_init_floor
        self.scan_backend = cfg.scan_backend
        self.chunk_size = cfg.chunk_size
        self.scan_checkpoint = cfg.scan_checkpoint
        k, d_inner, n, r = self.directions, self.d_inner, self.d_state, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, cfg.d_conv, padding=(cfg.d_conv - 1) // 2, groups=d_inner)
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, n))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        # Mamba keeps the state matrix and skip out of weight decay; ssm.state_weight_decay
        # chooses (the model's parameter_groups read the mark).
        self.A_logs._no_weight_decay = not cfg.state_weight_decay
        self.Ds._no_weight_decay = not cfg.state_weight_decay
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Mamba/VMamba initialisation of the per-direction scan parameters."""
        n = self.d_state
        bound = self.d_inner**-0.5  # nn.Linear's default for the stacked x_proj layers
        self.x_proj_weight.uniform_(-bound, bound)
        self.dt_projs_weight.uniform_(-(self.dt_rank**-0.5), self.dt_rank**-0.5)
        log_dt = torch.rand_like(self.dt_projs_bias) * (math.log(self.dt_max) - math.log(self.dt_min))
        dt = torch.exp(log_dt + math.log(self.dt_min)).clamp(min=self.dt_init_floor)
        self.dt_projs_bias.copy_(_inverse_softplus(dt))
        states = torch.arange(1, n + 1, dtype=self.A_logs.dtype, device=self.A_logs.device)
        self.A_logs.copy_(torch.log(states).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def _scan(self, x: torch.Tensor) -> torch.Tensor:
        """``B x D_inner x H x W`` -> ``B x D_inner x L`` (cross-scan, scan, cross-merge)."""
        batch, d_inner, height, width = x.shape
        k, n, length = self.directions, self.d_state, height * width
        dtype = torch.promote_types(x.dtype, torch.float32)  # fp32, or fp64 for a fp64 model
        with _autocast_off(x.device):
            xs = cross_scan(x.to(dtype), k)  # B x K x D x L
            projected = torch.matmul(self.x_proj_weight.to(dtype), xs)  # B x K x (R + 2N) x L
            dts, Bs, Cs = torch.split(projected, [self.dt_rank, n, n], dim=2)
            dts = torch.matmul(self.dt_projs_weight.to(dtype), dts)  # B x K x D x L
            ys = selective_scan(
                xs.reshape(batch, k * d_inner, length),
                dts.reshape(batch, k * d_inner, length),
                -torch.exp(self.A_logs.to(dtype)),
                Bs.contiguous(),
                Cs.contiguous(),
                self.Ds.to(dtype),
                delta_bias=self.dt_projs_bias.to(dtype).reshape(-1),
                delta_softplus=True,
                backend=self.scan_backend,
                chunk_size=self.chunk_size,
                checkpoint=self.scan_checkpoint,
            )
            return cross_merge(ys.reshape(batch, k, d_inner, length), height, width)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """``B x H x W x d_model`` -> ``B x H x W x d_model``."""
        batch, height, width, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self._scan(x).transpose(1, 2).reshape(batch, height, width, self.d_inner)
        y = self.out_norm(y.to(z.dtype)) * F.silu(z)
        return self.out_proj(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x d_model x H x W`` -> ``B x d_model x H x W``."""
        return self.forward_channels_last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ODSSMBlock(nn.Module):
    """One OD-SSM layer with pre-norm residual: ``y = x + SS2D(LayerNorm(x))``.

    Args:
        dim: Channels (the prompt embedding dim, 256).
        cfg: Scan settings.

    Shapes:
        ``B x dim x H x W`` -> ``B x dim x H x W``.
    """

    def __init__(self, dim: int = 256, cfg: SSMConfig | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = x + self.ss2d.forward_channels_last(self.norm(x))
        return x.permute(0, 3, 1, 2)


def ss2d_scan_flops(batch: int, height: int, width: int, cfg: SSMConfig, d_model: int = 256) -> int:
    """Analytic selective-scan cost of one SS2D: ``9 * L * D_inner * N`` per direction and image.

    FLOP counters miss the recurrence; add this to their count (see
    :func:`odssam.models.selective_scan.selective_scan_flops`).

    Args:
        batch: Images.
        height: Grid rows H.
        width: Grid columns W.
        cfg: Scan settings (directions, expand, d_state).
        d_model: SS2D input channels.

    Returns:
        ``9 * batch * K * D_inner * H * W * N``.
    """
    return selective_scan_flops(batch, cfg.directions * cfg.expand * d_model, height * width, cfg.d_state)
