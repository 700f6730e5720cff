"""Conversion of predictions and ground truths to the arrays every metric works on.

All metrics take a prediction as an ``HxW`` float64 array in [0, 1] and a ground truth as an
``HxW`` bool array. These helpers accept what callers have at hand (numpy arrays or torch
tensors, float probabilities or 8/16-bit maps, single images or batches) and convert it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

# numpy's spacing(1), the epsilon of MATLAB; the reference tools add it to denominators.
EPS = float(np.spacing(1))

# Values of an 8-bit map are k/255; SOD and polyp metrics threshold at these 256 levels.
NUM_LEVELS = 256


def to_numpy(array: Any) -> np.ndarray:
    """Return ``array`` (numpy array, torch tensor or nested list) as a numpy array."""
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch
        array = array.detach()
        if array.dtype.is_floating_point and array.dtype.itemsize < 4:
            array = array.float()  # bf16/fp16 have no numpy dtype
        return array.cpu().numpy()
    return np.asarray(array)


def as_probability(pred: Any) -> np.ndarray:
    """Convert one prediction map to float64 values in [0, 1].

    Args:
        pred: ``HxW`` map. Floats must already lie in [0, 1]; ``uint8`` maps are divided by
            255 and ``uint16`` maps by 65535; bool maps become 0/1.

    Returns:
        ``HxW`` float64 array in [0, 1].

    Raises:
        ValueError: If the map is not 2-D, holds NaN/inf, or floats outside [0, 1].
    """
    array = to_numpy(pred)
    if array.ndim != 2:
        raise ValueError(f"prediction must be a HxW map, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if array.dtype == np.uint8:
        return array / 255.0
    if array.dtype == np.uint16:
        return array / 65535.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"prediction must be float in [0, 1], uint8 or uint16, got {array.dtype}")
    array = array.astype(np.float64, copy=False)
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("prediction holds NaN or infinite values")
    if low < 0.0 or high > 1.0:
        raise ValueError(f"prediction values must lie in [0, 1], got [{low:.4g}, {high:.4g}]")
    return array


def as_mask(gt: Any) -> np.ndarray:
    """Convert one ground-truth map to a bool mask.

    Bool maps are used as they are; any other map is binarised at half its dtype's range:
    ``> 127`` for ``uint8`` (as the data loaders binarise JPEG masks; PySODMetrics uses
    ``> 128``, which differs only for pixels equal to 128) and ``> 0.5`` otherwise.

    Args:
        gt: ``HxW`` map.

    Returns:
        ``HxW`` bool array.
    """
    array = to_numpy(gt)
    if array.ndim != 2:
        raise ValueError(f"ground truth must be a HxW map, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.dtype == np.uint8:
        return array > 127
    if array.dtype == np.uint16:
        return array > 32767
    return array > 0.5


def minmax_normalize(pred: np.ndarray) -> np.ndarray:
    """Stretch a map to [0, 1] as MATLAB's ``mapminmax`` does; constant maps are unchanged.

    Args:
        pred: ``HxW`` float64 map in [0, 1].

    Returns:
        ``HxW`` float64 map, the same object when ``pred`` is constant or already spans [0, 1].
    """
    low, high = pred.min(), pred.max()
    if high == low or (low == 0 and high == 1):
        return pred
    return (pred - low) / (high - low)


def quantize(pred: np.ndarray) -> np.ndarray:
    """Map [0, 1] values to the 8-bit levels 0..255 by flooring, as PySODMetrics does."""
    return (pred * 255).astype(np.uint8)


def iter_pairs(preds: Any, gts: Any) -> Iterator[tuple[Any, Any]]:
    """Split a single pair or a batch of pairs into single ``HxW`` pairs.

    Args:
        preds: One ``HxW`` map, a ``BxHxW`` or ``Bx1xHxW`` array/tensor, or a sequence of
            ``HxW`` maps.
        gts: The matching ground truth(s), in any of the same forms.

    Yields:
        ``(pred, gt)`` pairs of ``HxW`` maps (not yet converted).

    Raises:
        ValueError: If the batch sizes differ.
    """
    pred_list = _split_batch(preds)
    gt_list = _split_batch(gts)
    if len(pred_list) != len(gt_list):
        raise ValueError(f"got {len(pred_list)} predictions but {len(gt_list)} ground truths")
    yield from zip(pred_list, gt_list)


def _split_batch(maps: Any) -> Sequence[Any]:
    if isinstance(maps, (list, tuple)):
        return list(maps)
    ndim = maps.ndim if hasattr(maps, "ndim") else np.ndim(maps)
    if ndim == 2:
        return [maps]
    if ndim == 4 and maps.shape[1] == 1:
        return [m[0] for m in maps]
    if ndim == 3:
        return list(maps)
    raise ValueError(f"expected HxW, BxHxW or Bx1xHxW maps, got shape {tuple(maps.shape)}")
