"""Residual add fused with the LayerNorm that follows it, for the frozen SAM encoder.

Every ViT block of SAM computes ``x = x + update`` and then ``LayerNorm(x)`` (the next
sub-block's input). Under bf16 autocast on CUDA this is three passes over the fp32 residual
stream (add, norm in fp32, cast to bf16 inside the next linear layer); for ViT-H at batch 8
each pass moves about 170 MB, 64 times per forward. :func:`add_layer_norm` does it in one
Triton kernel that reads ``x`` and ``update`` once and writes the new residual (fp32) and
the normalised tokens directly in the low-precision dtype. The statistics are computed in
fp32, as autocast's LayerNorm does. Inference only: the kernel has no backward.
"""

from __future__ import annotations

import os

import torch
from torch import nn

try:  # Triton is optional; without it the plain PyTorch ops are used.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

MAX_CHANNELS = 8192  # one row per program: the row must fit in registers


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


if triton is not None:

    @triton.jit
    def _add_layer_norm_kernel(
        x_ptr, update_ptr, weight_ptr, bias_ptr, sum_ptr, out_ptr, channels, eps, BLOCK: tl.constexpr
    ):
        row = tl.program_id(0).to(tl.int64) * channels
        cols = tl.arange(0, BLOCK)
        valid = cols < channels
        x = tl.load(x_ptr + row + cols, mask=valid, other=0.0).to(tl.float32)
        update = tl.load(update_ptr + row + cols, mask=valid, other=0.0).to(tl.float32)
        total = x + update
        tl.store(sum_ptr + row + cols, total.to(sum_ptr.dtype.element_ty), mask=valid)
        mean = tl.sum(total, axis=0) / channels
        centred = tl.where(valid, total - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / channels + eps)
        weight = tl.load(weight_ptr + cols, mask=valid, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + cols, mask=valid, other=0.0).to(tl.float32)
        tl.store(out_ptr + row + cols, (centred * rstd * weight + bias).to(out_ptr.dtype.element_ty), mask=valid)


def kernel_fits(x: torch.Tensor, update: torch.Tensor, norm: nn.Module) -> bool:
    """Whether :func:`add_layer_norm` can use the Triton kernel for these inputs."""
    return (
        triton is not None
        and (x.is_cuda or (x.device.type == "cpu" and _interpreting()))
        and type(norm) is nn.LayerNorm
        and norm.elementwise_affine
        and norm.bias is not None
        and tuple(norm.normalized_shape) == (x.shape[-1],)
        and x.shape == update.shape
        and x.shape[-1] <= MAX_CHANNELS
        and not (torch.is_grad_enabled() and (x.requires_grad or update.requires_grad or norm.weight.requires_grad))
    )


def add_layer_norm(
    x: torch.Tensor, update: torch.Tensor, norm: nn.Module, out_dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``total = x + update`` and ``norm(total)``.

    Args:
        x: ...xC residual stream.
        update: ...xC, added to ``x``.
        norm: The LayerNorm applied to the sum.
        out_dtype: Dtype of the normalised output for the fused kernel (bf16/fp16 under
            autocast); ``None`` computes with the plain PyTorch ops.

    Returns:
        ``(total, normed)``: the sum in the promoted dtype of ``x`` and ``update``, and the
        normalised sum (in ``out_dtype`` when fused, else whatever ``norm`` returns).
    """
    if out_dtype is None or not kernel_fits(x, update, norm):
        total = x + update
        return total, norm(total)
    x, update = x.contiguous(), update.contiguous()
    channels = x.shape[-1]
    total = torch.empty(x.shape, dtype=torch.result_type(x, update), device=x.device)
    normed = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    rows = x.numel() // channels
    block = triton.next_power_of_2(channels)
    _add_layer_norm_kernel[(rows,)](
        x, update, norm.weight, norm.bias, total, normed, channels, norm.eps,
        BLOCK=block, num_warps=8 if block >= 2048 else 4,
    )
    return total, normed
