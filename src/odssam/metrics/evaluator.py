"""Streaming evaluation of a dataset: update per image or batch, compute at the end.

Memory is constant in the number of images: the SOD and polyp metrics keep running sums of
per-image values and 256-point curves, AUROC/AUPRO a score histogram (see
:mod:`odssam.metrics.anomaly` for its exactness, and ``exact_auc`` to keep every score).

Which map each metric sees:

* MAE, E-measure, S-measure, weighted F and meanDic/meanIoU: the per-image min-max
  normalised map (PySODMetrics and PraNet protocol; ``normalize=False`` to skip it).
* ``dice@0.5`` / ``iou@0.5``: the raw probability, ``prob > 0.5``.
* Pixel AUROC / AUPRO: the raw probability of all pixels of the dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from odssam.errors import OdsSamError
from odssam.metrics import dice as dice_metrics
from odssam.metrics import sod
from odssam.metrics.anomaly import DEFAULT_FPR_LIMIT, DEFAULT_NUM_BINS, PixelScoreAccumulator
from odssam.metrics.inputs import NUM_LEVELS, as_mask, as_probability, iter_pairs, minmax_normalize
from odssam.metrics.result import MetricResult

# Metric names accepted by Evaluator, in report order.
METRIC_NAMES = ("mae", "emeasure", "smeasure", "wfmeasure", "dice", "iou", "mdice", "miou", "auroc", "aupro")
# The paper's metrics (mE, MAE; Dice, IoU in both conventions); the rest cost more per image.
DEFAULT_METRICS = ("mae", "emeasure", "dice", "iou", "mdice", "miou")

_NORMALIZED_METRICS = {"mae", "emeasure", "smeasure", "wfmeasure", "mdice", "miou"}
_COUNT_METRICS = {"emeasure", "mdice", "miou"}


def resolve_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """Validate metric names; ``"all"`` or ``"default"`` expand, a string may be comma-separated.

    Returns:
        The selected names in report order.

    Raises:
        OdsSamError: On an unknown name (metric lists come from configs and the command line).
    """
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    selected: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            selected.update(METRIC_NAMES)
        elif name == "default":
            selected.update(DEFAULT_METRICS)
        elif name in METRIC_NAMES:
            selected.add(name)
        else:
            raise OdsSamError(
                f"unknown metric {raw!r}; choose from {', '.join(METRIC_NAMES)}, 'default' or 'all'"
            )
    if not selected:
        raise OdsSamError("no metric selected")
    return tuple(name for name in METRIC_NAMES if name in selected)


class Evaluator:
    """Accumulates metrics over the images of one dataset or category.

    Example::

        evaluator = Evaluator(metrics=("mae", "emeasure", "dice", "iou"), name="kvasir")
        for prob, gt in loader:          # prob: BxHxW floats in [0, 1], gt: BxHxW bool
            evaluator.update(prob, gt)
        result = evaluator.compute()     # MetricResult(name="kvasir", values={"MAE": ...})

    Args:
        metrics: Names from :data:`METRIC_NAMES` (or ``"all"``), see :func:`resolve_metrics`.
        name: Dataset or category name stored in the result.
        normalize: Min-max normalise each map for the SOD and PraNet metrics.
        threshold: Binarisation threshold of ``dice@`` / ``iou@`` (``prob > threshold``).
        empty_score: ``dice@`` / ``iou@`` of an image whose prediction and ground truth are
            both empty.
        exact_auc: Keep every pixel score for AUROC/AUPRO instead of a histogram.
        num_bins: Histogram bins of AUROC/AUPRO.
        fpr_limit: FPR integration limit of AUPRO.
    """

    def __init__(
        self,
        metrics: str | Iterable[str] = DEFAULT_METRICS,
        name: str = "dataset",
        *,
        normalize: bool = True,
        threshold: float = 0.5,
        empty_score: float = 1.0,
        exact_auc: bool = False,
        num_bins: int = DEFAULT_NUM_BINS,
        fpr_limit: float = DEFAULT_FPR_LIMIT,
    ) -> None:
        self.metrics = resolve_metrics(metrics)
        self.name = name
        self.normalize = normalize
        self.threshold = threshold
        self.empty_score = empty_score
        self.fpr_limit = fpr_limit
        self._wanted = set(self.metrics)
        self._pixel_scores: PixelScoreAccumulator | None = None
        if self._wanted & {"auroc", "aupro"}:
            self._pixel_scores = PixelScoreAccumulator(
                num_bins=num_bins, exact=exact_auc, track_regions="aupro" in self._wanted
            )
        self.reset()

    @property
    def dice_key(self) -> str:
        """Key of the fixed-threshold Dice, e.g. ``dice@0.5``."""
        return f"dice@{self.threshold:g}"

    @property
    def iou_key(self) -> str:
        """Key of the fixed-threshold IoU, e.g. ``iou@0.5``."""
        return f"iou@{self.threshold:g}"

    @property
    def aupro_key(self) -> str:
        """``pixel_AUPRO`` at the usual 0.3 limit, ``pixel_AUPRO@<limit>`` otherwise."""
        return "pixel_AUPRO" if self.fpr_limit == DEFAULT_FPR_LIMIT else f"pixel_AUPRO@{self.fpr_limit:g}"

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.n_images = 0
        self._sums: dict[str, float] = {}
        self._curve_sums: dict[str, np.ndarray] = {}
        if self._pixel_scores is not None:
            self._pixel_scores.reset()

    def update(self, prob: Any, gt: Any) -> None:
        """Add one image or a batch.

        Args:
            prob: ``HxW`` probability map(s) in [0, 1] (numpy or torch; ``uint8`` maps are
                read as k/255), as one map, a ``BxHxW`` / ``Bx1xHxW`` batch or a list.
            gt: Matching ground truth(s): bool, or binarised as
                :func:`odssam.metrics.inputs.as_mask` describes.

        Raises:
            ValueError: On mismatched shapes or values outside [0, 1].
        """
        for one_prob, one_gt in iter_pairs(prob, gt):
            prob_map = as_probability(one_prob)
            mask = as_mask(one_gt)
            if prob_map.shape != mask.shape:
                raise ValueError(f"prediction {prob_map.shape} and ground truth {mask.shape} differ in size")
            self._update_one(prob_map, mask)

    def _update_one(self, prob: np.ndarray, gt: np.ndarray) -> None:
        wanted = self._wanted
        self.n_images += 1
        pred = prob
        if self.normalize and wanted & _NORMALIZED_METRICS:
            pred = minmax_normalize(prob)
        if "mae" in wanted:
            self._add("MAE", sod.mae(pred, gt))
        if wanted & _COUNT_METRICS:
            tp, fp = sod.threshold_counts(pred, gt)
            n_fg = int(tp[0])  # every pixel is at or above level 0
            if "emeasure" in wanted:
                self._add_curve("emeasure", sod.emeasure_from_counts(tp, fp, n_fg, gt.size))
                self._add("adpEm", sod.adaptive_emeasure(pred, gt))
            if wanted & {"mdice", "miou"}:
                dice_curve, iou_curve = dice_metrics.dice_iou_from_counts(tp, fp, n_fg)
                self._add_curve("dice", dice_curve)
                self._add_curve("iou", iou_curve)
        if "smeasure" in wanted:
            self._add("Sm", sod.smeasure(pred, gt))
        if "wfmeasure" in wanted:
            self._add("wFm", sod.weighted_fmeasure(pred, gt))
        if wanted & {"dice", "iou"}:
            dice, iou = dice_metrics.dice_iou_at_threshold(prob, gt, self.threshold, self.empty_score)
            self._add(self.dice_key, dice)
            self._add(self.iou_key, iou)
        if self._pixel_scores is not None:
            self._pixel_scores.update(prob, gt)

    def _add(self, key: str, value: float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + float(value)

    def _add_curve(self, key: str, curve: np.ndarray) -> None:
        if key in self._curve_sums:
            self._curve_sums[key] += curve
        else:
            self._curve_sums[key] = np.array(curve, dtype=np.float64)

    def compute(self) -> MetricResult:
        """Scores of all images seen so far (NaN for every metric when there are none)."""
        n = self.n_images
        nan = float("nan")
        curves = {key: total / n for key, total in self._curve_sums.items()} if n else {}
        empty_curve = np.full(NUM_LEVELS, nan)

        def mean_of(key: str) -> float:
            return self._sums[key] / n if n else nan

        values: dict[str, float] = {}
        for metric in self.metrics:
            if metric == "mae":
                values["MAE"] = mean_of("MAE")
            elif metric == "emeasure":
                curve = curves.get("emeasure", empty_curve)
                values["meanEm"] = float(curve.mean())
                values["maxEm"] = float(curve.max())
                values["adpEm"] = mean_of("adpEm")
            elif metric == "smeasure":
                values["Sm"] = mean_of("Sm")
            elif metric == "wfmeasure":
                values["wFm"] = mean_of("wFm")
            elif metric == "dice":
                values[self.dice_key] = mean_of(self.dice_key)
            elif metric == "iou":
                values[self.iou_key] = mean_of(self.iou_key)
            elif metric == "mdice":
                values["meanDic"] = float(curves.get("dice", empty_curve).mean())
            elif metric == "miou":
                values["meanIoU"] = float(curves.get("iou", empty_curve).mean())
            elif metric == "auroc":
                values["pixel_AUROC"] = self._pixel_scores.auroc() if n else nan
            elif metric == "aupro":
                values[self.aupro_key] = self._pixel_scores.aupro(self.fpr_limit) if n else nan
        kept_curves = {key: curve.tolist() for key, curve in curves.items() if self._curve_wanted(key)}
        return MetricResult(name=self.name, n_images=n, values=values, curves=kept_curves or None)

    def _curve_wanted(self, key: str) -> bool:
        if key == "dice":
            return "mdice" in self._wanted
        if key == "iou":
            return "miou" in self._wanted
        return True
