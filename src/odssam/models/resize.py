"""Bicubic resizing as four gathered taps per axis: ``F.interpolate(mode="bicubic")`` made fast on GPUs.

PyTorch's CUDA bicubic kernel gives each output pixel one thread that loops over every
image and channel of the batch, and its backward adds into the input with atomics: for
the EfficientViT-SAM neck (Bx256 maps of 16x16 and 32x32 resized to 64x64) the forward took
6 ms per batch of 8 and the backward more, a large share of a training step. Bicubic
interpolation is separable: every output row (column) is a weighted sum of four input rows
(columns), with weights that depend only on the sizes. :func:`resize_bicubic` computes the
same function as ``F.interpolate(x, size, mode="bicubic", align_corners=False)``
(Keys' cubic convolution with ``a = -0.75``, source index ``(dst + 0.5) * in / out - 0.5``,
taps clamped to the border) as four index-selects and multiply-adds per axis, in float32,
whose backward autograd derives. The tests compare values and gradients with
``F.interpolate``.
"""

from __future__ import annotations

import functools
import math

import torch

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic coefficient


def _cubic_weights(t: float) -> tuple[float, float, float, float]:
    """Weights of the taps at offsets -1, 0, 1, 2 from the floor of the source index (``t`` its fraction)."""

    def near(x: float) -> float:  # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A

    return far(t + 1), near(t), near(1 - t), far(2 - t)


@functools.lru_cache(maxsize=64)
def _taps(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices, weights)``: 4 x out_size int64 input positions and float32 weights along one axis."""
    scale = in_size / out_size
    indices, weights = [], []
    for dst in range(out_size):
        source = scale * (dst + 0.5) - 0.5  # not clamped at 0 for cubic, as in PyTorch
        floor = math.floor(source)
        indices.append([min(max(floor + offset, 0), in_size - 1) for offset in (-1, 0, 1, 2)])
        weights.append(_cubic_weights(source - floor))
    index_tensor = torch.tensor(indices, dtype=torch.int64).t().contiguous().to(device)
    weight_tensor = torch.tensor(weights, dtype=torch.float64).t().to(torch.float32).contiguous().to(device)
    return index_tensor, weight_tensor


def _resize_axis(x: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    indices, weights = _taps(x.shape[dim], out_size, x.device)
    shape = [1] * x.dim()
    shape[dim] = out_size
    result = None
    for tap in range(4):
        term = x.index_select(dim, indices[tap]) * weights[tap].view(shape)
        result = term if result is None else result + term
    return result


def resize_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bicubic", align_corners=False)``, fast on GPUs.

    Args:
        x: BxCxhxw, any float dtype and memory format.
        size: ``(H, W)`` of the result.

    Returns:
        BxCxHxW in ``x``'s dtype (computed in float32) and memory format.
    """
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    y = x.float()
    if y.shape[-1] != size[1]:
        y = _resize_axis(y, size[1], -1)
    if y.shape[-2] != size[0]:
        y = _resize_axis(y, size[0], -2)
    y = y.to(x.dtype)
    return y.contiguous(memory_format=torch.channels_last) if channels_last else y
