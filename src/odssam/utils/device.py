"""Where and in which precision the model runs: the one resolver of ``device`` and ``precision``.

Training, evaluation, prediction, the CLI and the benchmarks all turn the user's
``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and ``precision`` (``auto``, ``bf16``,
``fp32``) strings into a :class:`torch.device` and an autocast dtype here.
"""

from __future__ import annotations

import contextlib

import torch

from odssam.errors import OdsSamError

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/``None`` -> CUDA when available, else CPU; a named CUDA device must exist.

    Raises:
        OdsSamError: An unknown device name, or CUDA asked for where there is none.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise OdsSamError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise OdsSamError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: ``auto`` is bf16 on CUDA and fp32 (no autocast, ``None``) elsewhere.

    Raises:
        OdsSamError: ``precision`` is not one of :data:`PRECISIONS` (callers such as
            :class:`~odssam.inference.predictor.Predictor` pass the user's string as given).
    """
    if precision not in PRECISIONS:
        raise OdsSamError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None, cache_enabled: bool = True):
    """``torch.autocast`` for ``dtype``, or a no-op context for fp32 (``dtype`` ``None``).

    ``cache_enabled=False`` for a step recorded as a CUDA graph (casts must be recorded too).
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache_enabled)
