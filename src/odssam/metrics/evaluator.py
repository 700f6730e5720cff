"""Streaming evaluation of a dataset: update per image or batch, compute at the end.

Memory is constant in the number of images: the SOD and polyp metrics keep running sums of
per-image values and 256-point curves, AUROC/AUPRO a score histogram (see
:mod:`odssam.metrics.anomaly` for its exactness, and ``exact_auc`` to keep every score).
The metrics themselves, and which map each one sees, are the entries of
:mod:`odssam.metrics.registry`.

``METRIC_NAMES`` (every metric name, in report order) and ``DEFAULT_METRICS`` (the paper's
metrics: mE, MAE; Dice, IoU in both conventions) are read from the registry at each access, so
that a metric registered at run time is accepted wherever names are checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from odssam.errors import OdsSamError
from odssam.metrics.anomaly import DEFAULT_FPR_LIMIT, DEFAULT_NUM_BINS
from odssam.metrics.inputs import as_mask, as_probability, iter_pairs
from odssam.metrics.registry import METRICS, Averages, EvalSettings, ImageView, metric_names
from odssam.metrics.result import MetricResult


def __getattr__(name: str) -> tuple[str, ...]:
    """``METRIC_NAMES`` and ``DEFAULT_METRICS``, from the registry as it is now."""
    if name == "METRIC_NAMES":
        return metric_names()
    if name == "DEFAULT_METRICS":
        return metric_names(default_only=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """Validate metric names; ``"all"`` or ``"default"`` expand, a string may be comma-separated.

    Returns:
        The selected names in report order.

    Raises:
        OdsSamError: On an unknown name (metric lists come from configs and the command line).
    """
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    known = metric_names()
    selected: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            selected.update(known)
        elif name == "default":
            selected.update(metric_names(default_only=True))
        elif name in known:
            selected.add(name)
        else:
            raise OdsSamError(
                f"unknown metric {raw!r}; choose from {', '.join(known)}, 'default' or 'all'"
            )
    if not selected:
        raise OdsSamError(f"no metric selected in {metrics!r}; choose from {', '.join(known)}, 'default' or 'all'")
    return tuple(name for name in known if name in selected)


class Evaluator:
    """Accumulates metrics over the images of one dataset or category.

    Example::

        evaluator = Evaluator(metrics=("mae", "emeasure", "dice", "iou"), name="kvasir")
        for prob, gt in loader:          # prob: BxHxW floats in [0, 1], gt: BxHxW bool
            evaluator.update(prob, gt)
        result = evaluator.compute()     # MetricResult(name="kvasir", values={"MAE": ...})

    Args:
        metrics: Names from :data:`METRIC_NAMES`, ``"default"`` (:data:`DEFAULT_METRICS`) or
            ``"all"``, see :func:`resolve_metrics`.
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
        metrics: str | Iterable[str] = "default",
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
        self.exact_auc = exact_auc
        self.num_bins = num_bins
        self.fpr_limit = fpr_limit
        self._selected = tuple(METRICS[metric] for metric in self.metrics)
        # One dataset-level accumulator per builder: AUROC and AUPRO share their pixel scores.
        self._datasets: dict[Any, Any] = {}
        for metric in self._selected:
            if metric.dataset is not None and metric.dataset not in self._datasets:
                self._datasets[metric.dataset] = metric.dataset(self.settings, self.metrics)
        self.reset()

    @property
    def settings(self) -> EvalSettings:
        """The options the metrics read, as the attributes hold them now."""
        return EvalSettings(
            self.normalize, self.threshold, self.empty_score, self.exact_auc, self.num_bins, self.fpr_limit
        )

    @property
    def dice_key(self) -> str:
        """Key of the fixed-threshold Dice, e.g. ``dice@0.5``."""
        return self.settings.threshold_key("dice")

    @property
    def iou_key(self) -> str:
        """Key of the fixed-threshold IoU, e.g. ``iou@0.5``."""
        return self.settings.threshold_key("iou")

    @property
    def aupro_key(self) -> str:
        """``pixel_AUPRO`` at the usual 0.3 limit, ``pixel_AUPRO@<limit>`` otherwise."""
        return self.settings.aupro_key

    def reset(self) -> None:
        """Forget every image seen so far."""
        self.n_images = 0
        # Metric name -> accumulated name -> sum over images (a float, or a float64 array).
        self._totals: dict[str, dict[str, Any]] = {metric.name: {} for metric in self._selected}
        for dataset in self._datasets.values():
            dataset.reset()

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
        settings = self.settings
        for one_prob, one_gt in iter_pairs(prob, gt):
            prob_map = as_probability(one_prob)
            mask = as_mask(one_gt)
            if prob_map.shape != mask.shape:
                raise ValueError(f"prediction {prob_map.shape} and ground truth {mask.shape} differ in size")
            self._update_one(ImageView(prob_map, mask, settings))

    def _update_one(self, image: ImageView) -> None:
        self.n_images += 1
        for metric in self._selected:
            totals = self._totals[metric.name]
            for key, value in metric.accumulate(image).items():
                if np.ndim(value) == 0:
                    totals[key] = totals.get(key, 0.0) + float(value)
                elif key in totals:
                    totals[key] += value
                else:
                    totals[key] = np.array(value, dtype=np.float64)
        for dataset in self._datasets.values():
            dataset.update(image.prob, image.gt)

    def compute(self) -> MetricResult:
        """Scores of all images seen so far (NaN for every metric when there are none)."""
        n = self.n_images
        settings = self.settings
        values: dict[str, float] = {}
        curves: dict[str, list[float]] = {}
        for metric in self._selected:
            keys = metric.keys(settings)
            if not n:
                values.update(dict.fromkeys(keys, float("nan")))
                continue
            means = {key: total / n for key, total in self._totals[metric.name].items()}
            averages = Averages(means, self._datasets.get(metric.dataset), settings)
            values.update(zip(keys, metric.reduce(averages), strict=True))
            curves.update({curve: means[curve].tolist() for curve in metric.curves})
        return MetricResult(name=self.name, n_images=n, values=values, curves=curves or None)
