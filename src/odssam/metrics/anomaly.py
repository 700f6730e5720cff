"""Pixel-level anomaly-detection metrics as anomalib names them: pixel AUROC and AUPRO.

Both pool every pixel of every image of a dataset and score the raw probability (no
per-image normalisation, so scores stay comparable across images).

* AUROC: area under the ROC curve of all pixels (the value scikit-learn's
  ``roc_auc_score`` gives on the flattened maps).
* AUPRO (Bergmann et al., MVTec AD; anomalib's ``AUPRO``): the ground truth of each image
  is split into 8-connected regions. At every threshold, the per-region overlap (PRO) is the
  mean over all regions of the dataset of the fraction of the region predicted anomalous,
  and the false-positive rate is taken over all normal pixels. The area under PRO(FPR) up
  to FPR = 0.3 (the PRO value at 0.3 linearly interpolated), divided by 0.3, is the score.
  anomalib evaluates this curve by resampling per-region ROC curves by index, an
  approximation of the same quantity; here it is computed directly.

Memory: by default scores are accumulated in a histogram of 65536 equal bins over [0, 1]
(bin ``round(65535 * p)``), so memory stays constant however many images are seen. 8-bit
maps (values k/255) and 16-bit maps (k/65535) fall one value per bin, so the result is
then exact; other float maps are scored as if rounded to 1/65535. ``exact=True`` keeps every
pixel score instead (memory grows with the dataset) and gives the exact areas.
"""

from __future__ import annotations

import numpy as np

from odssam.metrics.histogram import split_histogram

DEFAULT_NUM_BINS = 65536
DEFAULT_FPR_LIMIT = 0.3

# 8-connectivity, as OpenCV's connectedComponents (anomalib) and the MVTec AD evaluation use.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def label_regions(gt: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected regions of a mask.

    Args:
        gt: ``HxW`` bool mask.

    Returns:
        ``(labels, count)``: ``HxW`` int32 labels (0 = background, 1..count regions).
    """
    from scipy import ndimage  # connected-component labelling is only needed for AUPRO

    labels, count = ndimage.label(gt, structure=_EIGHT_CONNECTED)
    return labels.astype(np.int32, copy=False), int(count)


class PixelScoreAccumulator:
    """Streaming state for pixel AUROC and AUPRO over a dataset.

    Args:
        num_bins: Histogram bins over [0, 1] (binned mode).
        exact: Keep every pixel score instead of a histogram.
        track_regions: Also accumulate the per-region overlaps AUPRO needs (costs a
            connected-component labelling per image).
    """

    def __init__(
        self, num_bins: int = DEFAULT_NUM_BINS, exact: bool = False, track_regions: bool = True
    ) -> None:
        if num_bins < 2:
            raise ValueError(f"num_bins must be at least 2, got {num_bins}")
        self.num_bins = num_bins
        self.exact = exact
        self.track_regions = track_regions
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.n_regions = 0
        if self.exact:
            self._neg_scores: list[np.ndarray] = []
            self._pos_scores: list[np.ndarray] = []
            self._pos_weights: list[np.ndarray] = []
        else:
            self._neg_hist = np.zeros(self.num_bins, dtype=np.int64)
            self._pos_hist = np.zeros(self.num_bins, dtype=np.int64)
            self._region_hist = np.zeros(self.num_bins, dtype=np.float64)

    def update(self, prob: np.ndarray, gt: np.ndarray) -> None:
        """Add one image.

        Args:
            prob: ``HxW`` float64 map in [0, 1].
            gt: ``HxW`` bool mask.
        """
        region_weight = None
        if self.track_regions:
            labels, count = label_regions(gt)
            if count:
                fg_labels = labels[gt]
                # Each region then sums to 1, so a histogram of weights sums overlaps.
                region_weight = 1.0 / np.bincount(fg_labels)[fg_labels]
            self.n_regions += count
        if self.exact:
            self._neg_scores.append(prob[~gt])
            self._pos_scores.append(prob[gt])
            if region_weight is not None:
                self._pos_weights.append(region_weight)
            elif self.track_regions:
                self._pos_weights.append(np.zeros(0))
            return
        scaled = prob * (self.num_bins - 1)
        index = np.rint(scaled, out=scaled).astype(np.int32)
        neg_hist, pos_hist = split_histogram(index, gt, self.num_bins)
        self._neg_hist += neg_hist
        self._pos_hist += pos_hist
        if region_weight is not None:
            self._region_hist += np.bincount(index[gt], weights=region_weight, minlength=self.num_bins)

    def _per_score_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Negative count, positive count and region weight per distinct score, ascending."""
        if not self.exact:
            return self._neg_hist, self._pos_hist, self._region_hist
        neg = np.concatenate(self._neg_scores) if self._neg_scores else np.zeros(0)
        pos = np.concatenate(self._pos_scores) if self._pos_scores else np.zeros(0)
        scores, inverse = np.unique(np.concatenate([neg, pos]), return_inverse=True)
        n_scores = scores.size
        neg_count = np.bincount(inverse[: neg.size], minlength=n_scores)
        pos_count = np.bincount(inverse[neg.size :], minlength=n_scores)
        region_weight = np.zeros(n_scores)
        if self.track_regions and self._pos_weights:
            weights = np.concatenate(self._pos_weights)
            region_weight = np.bincount(inverse[neg.size :], weights=weights, minlength=n_scores)
        return neg_count, pos_count, region_weight

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """False- and true-positive rates at every threshold, from (0, 0) to (1, 1).

        Returns:
            ``(fpr, tpr)``; NaN arrays when there are no normal or no anomalous pixels.
        """
        neg, pos, _ = self._per_score_counts()
        fpr = _descending_cumulative_rate(neg)
        tpr = _descending_cumulative_rate(pos)
        return fpr, tpr

    def pro_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """False-positive rate and mean per-region overlap at every threshold.

        Returns:
            ``(fpr, pro)``; NaN arrays when there are no normal pixels or no regions.
        """
        if not self.track_regions:
            raise RuntimeError("this accumulator was built with track_regions=False")
        neg, _, region_weight = self._per_score_counts()
        fpr = _descending_cumulative_rate(neg)
        if self.n_regions == 0:
            return fpr, np.full_like(fpr, np.nan)
        pro = np.concatenate([[0.0], np.cumsum(region_weight[::-1])]) / self.n_regions
        return fpr, pro

    def auroc(self) -> float:
        """Area under the pixel ROC curve; NaN without both normal and anomalous pixels."""
        fpr, tpr = self.roc_curve()
        return trapezoid(fpr, tpr)

    def aupro(self, fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
        """Area under PRO(FPR) up to ``fpr_limit``, divided by ``fpr_limit``.

        Returns:
            AUPRO in [0, 1]; NaN without normal pixels or without anomalous regions.
        """
        if not 0 < fpr_limit <= 1:
            raise ValueError(f"fpr_limit must lie in (0, 1], got {fpr_limit}")
        fpr, pro = self.pro_curve()
        return area_up_to(fpr, pro, fpr_limit) / fpr_limit


def _descending_cumulative_rate(counts: np.ndarray) -> np.ndarray:
    """Fraction of samples at or above each score, highest score first, starting at 0."""
    cumulative = np.concatenate([[0], np.cumsum(counts[::-1])]).astype(np.float64)
    total = cumulative[-1]
    if total == 0:
        return np.full_like(cumulative, np.nan)
    return cumulative / total


def trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under ``y(x)`` for non-decreasing ``x`` (NaN propagates)."""
    if x.size < 2:
        return float("nan")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under ``y(x)`` for ``x`` in [x[0], limit].

    ``x`` must be non-decreasing; the curve is cut at ``limit`` with ``y`` linearly
    interpolated there.
    """
    if x.size < 2 or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    inside = int(np.searchsorted(x, limit, side="right"))
    xs, ys = x[:inside], y[:inside]
    if inside < x.size and xs[-1] < limit:
        x0, y0, x1, y1 = x[inside - 1], y[inside - 1], x[inside], y[inside]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        xs = np.append(xs, limit)
        ys = np.append(ys, y_limit)
    return trapezoid(xs, ys)


def pixel_auroc(probs, gts, exact: bool = True) -> float:
    """Pixel AUROC of a list of ``HxW`` probability maps against bool masks."""
    accumulator = PixelScoreAccumulator(exact=exact, track_regions=False)
    for prob, gt in zip(probs, gts, strict=True):
        accumulator.update(np.asarray(prob, dtype=np.float64), np.asarray(gt, dtype=bool))
    return accumulator.auroc()


def pixel_aupro(probs, gts, fpr_limit: float = DEFAULT_FPR_LIMIT, exact: bool = True) -> float:
    """AUPRO of a list of ``HxW`` probability maps against bool masks."""
    accumulator = PixelScoreAccumulator(exact=exact, track_regions=True)
    for prob, gt in zip(probs, gts, strict=True):
        accumulator.update(np.asarray(prob, dtype=np.float64), np.asarray(gt, dtype=bool))
    return accumulator.aupro(fpr_limit)
