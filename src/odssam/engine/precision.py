"""Numeric precision of training and evaluation: bf16 autocast on CUDA, fp32 on the CPU."""

from __future__ import annotations

import contextlib

import torch

from odssam.errors import OdsSamError

PRECISIONS = ("auto", "bf16", "fp32")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto`` -> bf16 on CUDA and fp32 (no autocast) elsewhere; ``None`` means no autocast."""
    if precision not in PRECISIONS:
        raise OdsSamError(f"train.precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None, cache_enabled: bool = True):
    """``torch.autocast`` for ``dtype``, or a no-op context for fp32.

    ``cache_enabled=False`` for a step recorded as a CUDA graph (casts must be recorded too).
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache_enabled)
