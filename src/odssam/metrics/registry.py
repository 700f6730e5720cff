"""The metric registry: one :class:`Metric` entry per metric name that configs and the CLI accept.

An entry says what the metric takes from each image, how the averages over the images become
its reported values, and the :class:`MetricSpec` (label, direction, definition) of each result
key; :class:`~odssam.metrics.evaluator.Evaluator` loops over the selected entries. Adding a
metric is adding an entry to :data:`METRICS` (or one :func:`register_metric` call).

Per image, entries read an :class:`ImageView`, which computes what several metrics share (the
normalised map, the counts at 256 thresholds, ...) once, on first use. Which map each metric sees:

* MAE, E-measure, S-measure, weighted F and meanDic/meanIoU: the per-image min-max
  normalised map (PySODMetrics and PraNet protocol; ``normalize=False`` to skip it).
* ``dice@0.5`` / ``iou@0.5``: the raw probability, ``prob > 0.5``.
* Pixel AUROC / AUPRO: the raw probability of all pixels of the dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from odssam.metrics import dice as dice_metrics
from odssam.metrics import sod
from odssam.metrics.anomaly import DEFAULT_FPR_LIMIT, DEFAULT_NUM_BINS, PixelScoreAccumulator
from odssam.metrics.inputs import minmax_normalize


@dataclass(frozen=True)
class MetricSpec:
    """How a metric key is shown and what it means.

    Attributes:
        key: Key in :attr:`~odssam.metrics.result.MetricResult.values`.
        label: Column or row label in tables (the paper's abbreviation where it has one).
        higher_is_better: Direction, shown as an arrow.
        definition: One line stating the convention.
    """

    key: str
    label: str
    higher_is_better: bool
    definition: str


@dataclass(frozen=True)
class EvalSettings:
    """The options of an evaluation that metrics read (see :class:`~odssam.metrics.evaluator.Evaluator`)."""

    normalize: bool = True
    threshold: float = 0.5
    empty_score: float = 1.0
    exact_auc: bool = False
    num_bins: int = DEFAULT_NUM_BINS
    fpr_limit: float = DEFAULT_FPR_LIMIT

    def threshold_key(self, kind: str) -> str:
        """Key of the fixed-threshold ``kind`` (``dice`` or ``iou``), e.g. ``dice@0.5``."""
        return f"{kind}@{self.threshold:g}"

    @property
    def aupro_key(self) -> str:
        """``pixel_AUPRO`` at the usual 0.3 limit, ``pixel_AUPRO@<limit>`` otherwise."""
        return "pixel_AUPRO" if self.fpr_limit == DEFAULT_FPR_LIMIT else f"pixel_AUPRO@{self.fpr_limit:g}"


class ImageView:
    """One image as metrics read it; shared intermediate values are computed once, on first use.

    Attributes:
        prob: HxW float64 probability map in [0, 1], as given (not normalised).
        gt: HxW bool ground truth.
        settings: The evaluation's options.
    """

    def __init__(self, prob: np.ndarray, gt: np.ndarray, settings: EvalSettings) -> None:
        self.prob = prob
        self.gt = gt
        self.settings = settings

    @cached_property
    def pred(self) -> np.ndarray:
        """HxW map of the SOD and PraNet metrics: min-max normalised unless ``settings.normalize`` is off."""
        return minmax_normalize(self.prob) if self.settings.normalize else self.prob

    @cached_property
    def counts(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(tp, fp, n_fg)``: true and false positives of :attr:`pred` at each of the 256
        thresholds (two int64 arrays of 256) and the foreground pixel count."""
        tp, fp = sod.threshold_counts(self.pred, self.gt)
        return tp, fp, int(tp[0])  # every pixel is at or above level 0

    @cached_property
    def dice_iou_curves(self) -> tuple[np.ndarray, np.ndarray]:
        """PraNet's Dice and IoU of :attr:`pred` at the 256 thresholds, two float64 arrays of 256."""
        return dice_metrics.dice_iou_from_counts(*self.counts)

    @cached_property
    def dice_iou(self) -> tuple[float, float]:
        """Dice and IoU of ``prob > settings.threshold``."""
        return dice_metrics.dice_iou_at_threshold(
            self.prob, self.gt, self.settings.threshold, self.settings.empty_score
        )


class DatasetAccumulator(Protocol):
    """State a metric keeps over all pixels of the dataset instead of per-image values."""

    def update(self, prob: np.ndarray, gt: np.ndarray) -> None: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class Averages:
    """What a metric's ``reduce`` reads.

    Attributes:
        means: Each name the metric's ``accumulate`` returned -> its mean over the images (a
            float, or a float64 array for an array such as a 256-point curve).
        dataset: The metric's :class:`DatasetAccumulator` (None when it has none).
        settings: The evaluation's options.
    """

    means: Mapping[str, Any]
    dataset: Any
    settings: EvalSettings

    def __getitem__(self, name: str) -> Any:
        return self.means[name]


SpecsFor = Callable[[EvalSettings], tuple[MetricSpec, ...]]


def _nothing_per_image(image: ImageView) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Metric:
    """One selectable metric.

    Attributes:
        name: Lower-case name in configs and on the command line.
        specs: Spec of each result key, in report order; a function of the settings where the
            keys depend on them (``dice@0.5``).
        reduce: :class:`Averages` -> one value per spec, in order (not called without images:
            every value is then NaN).
        accumulate: Per image: :class:`ImageView` -> name -> float or array (a curve); each is
            averaged over the images.
        curves: Names of averaged arrays that the result keeps as curves (e.g. ``"emeasure"``).
        dataset: Builds a :class:`DatasetAccumulator` from the settings and the selected metric
            names; metrics with the same builder share one.
        default: Among :data:`~odssam.metrics.evaluator.DEFAULT_METRICS`.
    """

    name: str
    specs: tuple[MetricSpec, ...] | SpecsFor
    reduce: Callable[[Averages], tuple[float, ...]]
    accumulate: Callable[[ImageView], Mapping[str, Any]] = _nothing_per_image
    curves: tuple[str, ...] = ()
    dataset: Callable[[EvalSettings, tuple[str, ...]], DatasetAccumulator] | None = None
    default: bool = False

    def specs_for(self, settings: EvalSettings) -> tuple[MetricSpec, ...]:
        """The specs of the result keys under ``settings``."""
        return self.specs(settings) if callable(self.specs) else self.specs

    def keys(self, settings: EvalSettings) -> tuple[str, ...]:
        """The result keys under ``settings``, in report order."""
        return tuple(spec.key for spec in self.specs_for(settings))


def _keyed_spec(key: str) -> MetricSpec | None:
    """Spec of a key that names its own parameter (``dice@0.3``, ``iou@0.5``, ``pixel_AUPRO@0.1``)."""
    kind, _, parameter = key.partition("@")
    if kind in ("dice", "iou") and parameter:
        name = "Dice" if kind == "dice" else "IoU"
        return MetricSpec(
            key, f"{name}@{parameter}", True,
            f"{name} of prob > {parameter}, per image then mean over images (MoNuSeg/GlaS convention)",
        )
    if kind == "pixel_AUPRO" and parameter:
        return MetricSpec(key, f"AUPRO@{parameter}", True,
                          f"area under the per-region-overlap curve up to FPR {parameter}, normalised")
    return None


_AUPRO = MetricSpec("pixel_AUPRO", "AUPRO", True,
                    "area under the per-region-overlap curve up to FPR 0.3, divided by 0.3 (anomalib)")


def _pixel_scores(settings: EvalSettings, selected: tuple[str, ...]) -> PixelScoreAccumulator:
    """Score histogram (or every score) of all pixels, for AUROC and AUPRO."""
    return PixelScoreAccumulator(
        num_bins=settings.num_bins, exact=settings.exact_auc, track_regions="aupro" in selected
    )


def _emeasure(image: ImageView) -> dict[str, Any]:
    return {
        "emeasure": sod.emeasure_from_counts(*image.counts, image.gt.size),
        "adpEm": sod.adaptive_emeasure(image.pred, image.gt),
    }


def _threshold_metric(kind: str, index: int) -> Metric:
    """``dice`` / ``iou``: of ``prob > threshold``, per image then mean over images."""
    return Metric(
        kind,
        lambda settings: (_keyed_spec(settings.threshold_key(kind)),),
        reduce=lambda avg: (avg[kind],),
        accumulate=lambda image: {kind: image.dice_iou[index]},
        default=True,
    )


def _pranet_metric(name: str, curve: str, index: int, spec: MetricSpec) -> Metric:
    """``mdice`` / ``miou``: PraNet's 256-threshold ``curve`` averaged over images, then its mean."""
    return Metric(
        name,
        (spec,),
        reduce=lambda avg: (float(avg[curve].mean()),),
        accumulate=lambda image: {curve: image.dice_iou_curves[index]},
        curves=(curve,),
        default=True,
    )


# In report order. The paper's metrics (mE, MAE; Dice, IoU in both conventions) are the defaults.
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "mae",
            (MetricSpec("MAE", "MAE", False,
                        "mean absolute error of the min-max normalised map, per image then mean"),),
            reduce=lambda avg: (avg["MAE"],),
            accumulate=lambda image: {"MAE": sod.mae(image.pred, image.gt)},
            default=True,
        ),
        Metric(
            "emeasure",
            (
                MetricSpec("meanEm", "mE", True,
                           "E-measure at 256 thresholds, mean over images then over thresholds"),
                MetricSpec("maxEm", "maxE", True,
                           "E-measure at 256 thresholds, mean over images then max over thresholds"),
                MetricSpec("adpEm", "adpE", True,
                           "E-measure at the adaptive threshold min(2 * mean, 1), mean over images"),
            ),
            reduce=lambda avg: (float(avg["emeasure"].mean()), float(avg["emeasure"].max()), avg["adpEm"]),
            accumulate=_emeasure,
            curves=("emeasure",),
            default=True,
        ),
        Metric(
            "smeasure",
            (MetricSpec("Sm", "Sm", True, "S-measure (alpha 0.5), mean over images"),),
            reduce=lambda avg: (avg["Sm"],),
            accumulate=lambda image: {"Sm": sod.smeasure(image.pred, image.gt)},
        ),
        Metric(
            "wfmeasure",
            (MetricSpec("wFm", "wF", True, "weighted F-measure (beta 1), mean over images"),),
            reduce=lambda avg: (avg["wFm"],),
            accumulate=lambda image: {"wFm": sod.weighted_fmeasure(image.pred, image.gt)},
        ),
        _threshold_metric("dice", 0),
        _threshold_metric("iou", 1),
        _pranet_metric("mdice", "dice", 0, MetricSpec(
            "meanDic", "meanDic", True,
            "PraNet: Dice of the normalised map at 256 thresholds, mean over images then thresholds",
        )),
        _pranet_metric("miou", "iou", 1, MetricSpec(
            "meanIoU", "meanIoU", True,
            "PraNet: IoU of the normalised map at 256 thresholds, mean over images then thresholds",
        )),
        Metric(
            "auroc",
            (MetricSpec("pixel_AUROC", "AUROC", True, "area under the ROC curve of all pixels of the dataset"),),
            reduce=lambda avg: (avg.dataset.auroc(),),
            dataset=_pixel_scores,
        ),
        Metric(
            "aupro",
            lambda settings: (_keyed_spec(settings.aupro_key) or _AUPRO,),
            reduce=lambda avg: (avg.dataset.aupro(avg.settings.fpr_limit),),
            dataset=_pixel_scores,
        ),
    )
}

_DEFAULT_SETTINGS = EvalSettings()
_SELECTION_WORDS = ("all", "default")


def register_metric(metric: Metric) -> None:
    """Add ``metric`` to :data:`METRICS` (last in report order).

    Raises:
        ValueError: The name is taken, is not lower case, or holds a comma or spaces.
    """
    name = metric.name
    if name in METRICS or name in _SELECTION_WORDS:
        raise ValueError(f"metric name {name!r} is already taken")
    if not name or name != name.strip().lower() or "," in name or " " in name:
        raise ValueError(f"metric name {name!r} must be lower case without commas or spaces")
    METRICS[name] = metric


def unregister_metric(name: str) -> Metric:
    """Remove the metric called ``name`` from :data:`METRICS` and return it."""
    return METRICS.pop(name)


def metric_names(default_only: bool = False) -> tuple[str, ...]:
    """Names of the registered metrics (or of the default ones) in report order."""
    return tuple(name for name, metric in METRICS.items() if metric.default or not default_only)


def metric_spec(key: str) -> MetricSpec:
    """Return the spec of ``key``; thresholded Dice/IoU keys (``dice@0.5``) are built on demand."""
    for metric in METRICS.values():
        for spec in metric.specs_for(_DEFAULT_SETTINGS):
            if spec.key == key:
                return spec
    return _keyed_spec(key) or MetricSpec(key, key, True, "")


METRIC_SPECS: dict[str, MetricSpec] = {
    spec.key: spec for metric in METRICS.values() for spec in metric.specs_for(_DEFAULT_SETTINGS)
}
"""Spec of each key the built-in metrics report at the default settings."""
