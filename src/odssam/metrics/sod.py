"""Salient-object-detection metrics, computed as PySODMetrics computes them.

Every function scores one image: ``pred`` is an ``HxW`` float64 map in [0, 1] (callers that
follow the reference protocol min-max normalise it first, see
:func:`odssam.metrics.inputs.minmax_normalize`) and ``gt`` an ``HxW`` bool mask. Dataset
scores are the mean over images of these per-image values (and curves).

Threshold curves have 256 points: ``curve[k]`` scores the binary map ``floor(255 * pred) >= k``
(PySODMetrics stores the same curve in the reverse order, threshold 255 first).
"""

from __future__ import annotations

import numpy as np

from odssam.metrics.histogram import split_histogram
from odssam.metrics.inputs import EPS, NUM_LEVELS, quantize


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between ``pred`` and the 0/1 ground truth."""
    # sum |pred - gt| = sum(pred) - 2 * sum(pred over gt) + |gt|, without a temporary map.
    n_fg = np.count_nonzero(gt)
    return float((pred.sum() - 2 * np.sum(pred, where=gt) + n_fg) / pred.size)


def threshold_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Count true and false positives at each of the 256 thresholds in one pass.

    A histogram of the quantised map over foreground and background pixels, summed from the
    top level down, gives the number of pixels at or above every level.

    Args:
        pred: ``HxW`` float64 map in [0, 1].
        gt: ``HxW`` bool mask.

    Returns:
        ``(tp, fp)``, two int64 arrays of 256: ``tp[k]`` foreground and ``fp[k]`` background
        pixels with ``floor(255 * pred) >= k``.
    """
    hist_bg, hist_fg = split_histogram(quantize(pred), gt, NUM_LEVELS)
    tp = np.cumsum(hist_fg[::-1])[::-1]
    fp = np.cumsum(hist_bg[::-1])[::-1]
    return tp, fp


def emeasure_from_counts(tp, fp, n_fg: int, n_pixels: int):
    """Enhanced-alignment measure of binary maps given their confusion counts.

    The E-measure of a binary map only depends on the four counts TP, FP, FN, TN, because
    the alignment matrix takes one value per (prediction, ground truth) pair of labels.

    Args:
        tp: True positives, a scalar or an array (one entry per threshold).
        fp: False positives, same shape as ``tp``.
        n_fg: Foreground pixels of the ground truth.
        n_pixels: Pixels of the image.

    Returns:
        E-measure, same shape as ``tp``. An empty ground truth scores the fraction of
        predicted background, a full one the fraction of predicted foreground (as the
        reference does).
    """
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    pred_fg = tp + fp
    if n_fg == 0:
        enhanced_sum = n_pixels - pred_fg
    elif n_fg == n_pixels:
        enhanced_sum = pred_fg
    else:
        fn = n_fg - tp
        tn = (n_pixels - pred_fg) - fn
        mean_pred = pred_fg / n_pixels
        mean_gt = n_fg / n_pixels
        parts = (
            (tp, 1 - mean_pred, 1 - mean_gt),
            (fp, 1 - mean_pred, 0 - mean_gt),
            (fn, 0 - mean_pred, 1 - mean_gt),
            (tn, 0 - mean_pred, 0 - mean_gt),
        )
        enhanced_sum = 0.0
        for count, pred_value, gt_value in parts:
            align = 2 * (pred_value * gt_value) / (pred_value**2 + gt_value**2 + EPS)
            enhanced_sum = enhanced_sum + (align + 1) ** 2 / 4 * count
    return enhanced_sum / (n_pixels - 1 + EPS)


def emeasure_curve(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """E-measure at the 256 thresholds (mean E = curve mean, max E = curve max).

    Returns:
        float64 array of 256, ``curve[k]`` at ``floor(255 * pred) >= k``.
    """
    tp, fp = threshold_counts(pred, gt)
    return emeasure_from_counts(tp, fp, int(np.count_nonzero(gt)), gt.size)


def adaptive_threshold(pred: np.ndarray) -> float:
    """Twice the mean of the map, capped at 1 (the "adaptive" threshold of SOD tools)."""
    return min(2 * float(pred.mean()), 1.0)


def adaptive_emeasure(pred: np.ndarray, gt: np.ndarray) -> float:
    """E-measure of ``pred >= adaptive_threshold(pred)`` (unquantised map)."""
    binary = pred >= adaptive_threshold(pred)
    tp = np.count_nonzero(binary & gt)
    fp = np.count_nonzero(binary) - tp
    return float(emeasure_from_counts(tp, fp, int(np.count_nonzero(gt)), gt.size))


def smeasure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure: ``alpha`` object-aware plus ``1 - alpha`` region-aware similarity.

    Args:
        pred: ``HxW`` float64 map in [0, 1].
        gt: ``HxW`` bool mask.
        alpha: Weight of the object-aware term.

    Returns:
        S-measure in [0, 1]; ``1 - mean(pred)`` for an empty ground truth and ``mean(pred)``
        for a full one.
    """
    fg_fraction = np.mean(gt)
    if fg_fraction == 0:
        return float(1 - np.mean(pred))
    if fg_fraction == 1:
        return float(np.mean(pred))
    score = alpha * _object_score(pred, gt, fg_fraction) + (1 - alpha) * _region_score(pred, gt)
    return float(max(0.0, score))


def _object_similarity(values: np.ndarray) -> float:
    mean = np.mean(values)
    std = np.std(values, ddof=1) if values.size > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + EPS)


def _object_score(pred: np.ndarray, gt: np.ndarray, fg_fraction: float) -> float:
    fg_score = _object_similarity(pred[gt]) * fg_fraction
    bg_score = _object_similarity(1 - pred[~gt]) * (1 - fg_fraction)
    return fg_score + bg_score


def _region_score(pred: np.ndarray, gt: np.ndarray) -> float:
    height, width = gt.shape
    area = height * width
    rows, cols = np.nonzero(gt)
    # The reference rounds the centroid and adds 1, mirroring MATLAB's inclusive 1:X ranges.
    cy = int(np.round(rows.mean())) + 1
    cx = int(np.round(cols.mean())) + 1
    w_lt = cx * cy / area
    w_rt = cy * (width - cx) / area
    w_lb = (height - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    return (
        _ssim(pred[:cy, :cx], gt[:cy, :cx]) * w_lt
        + _ssim(pred[:cy, cx:], gt[:cy, cx:]) * w_rt
        + _ssim(pred[cy:, :cx], gt[cy:, :cx]) * w_lb
        + _ssim(pred[cy:, cx:], gt[cy:, cx:]) * w_rb
    )


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    n = pred.size
    x = np.mean(pred)
    y = np.mean(gt)
    sigma_x = np.sum((pred - x) ** 2) / (n - 1 + EPS)
    sigma_y = np.sum((gt - y) ** 2) / (n - 1 + EPS)
    sigma_xy = np.sum((pred - x) * (gt - y)) / (n - 1 + EPS)
    alpha = 4 * x * y * sigma_xy
    beta = (x**2 + y**2) * (sigma_x + sigma_y)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def weighted_fmeasure(pred: np.ndarray, gt: np.ndarray, beta: float = 1.0) -> float:
    """Weighted F-measure (Margolin et al. 2014), 0 for an empty ground truth.

    Errors of background pixels are taken from their nearest foreground pixel, smoothed by
    a 7x7 Gaussian (sigma 5) and weighted by distance to the foreground.

    Args:
        pred: ``HxW`` float64 map in [0, 1].
        gt: ``HxW`` bool mask.
        beta: The reference's weight of precision (used as given, not squared).

    Returns:
        Weighted F-measure in [0, 1].
    """
    if not gt.any():
        return 0.0
    from scipy import ndimage  # only this metric needs the exact distance transform

    distance, nearest = ndimage.distance_transform_edt(~gt, return_indices=True)
    error = np.abs(pred - gt)
    nearest_error = error[nearest[0], nearest[1]]
    # Foreground pixels are their own nearest foreground pixel, so this equals E there.
    smoothed = ndimage.convolve(nearest_error, _matlab_gaussian(7, 5.0), mode="constant", cval=0)
    min_error = np.where(gt & (smoothed < error), smoothed, error)
    importance = np.where(gt, 1.0, 2 - np.exp(np.log(0.5) / 5 * distance))
    weighted_error = min_error * importance
    fg_error = weighted_error[gt]
    tp_weighted = np.count_nonzero(gt) - np.sum(fg_error)
    fp_weighted = np.sum(weighted_error[~gt])
    recall = 1 - np.mean(fg_error)
    precision = tp_weighted / (tp_weighted + fp_weighted + EPS)
    return float((1 + beta) * recall * precision / (recall + beta * precision + EPS))


def _matlab_gaussian(size: int, sigma: float) -> np.ndarray:
    """The kernel of MATLAB's ``fspecial('gaussian', size, sigma)``."""
    half = (size - 1) / 2
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    kernel = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0
    return kernel / kernel.sum()
