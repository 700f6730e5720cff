"""Result objects and the catalogue of reported metric keys.

Every reported number has a key that names its convention (``dice@0.5`` is not ``meanDic``);
:data:`METRIC_SPECS` gives each key a table label and a one-line definition that reports
print as a legend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricSpec:
    """How a metric key is shown and what it means.

    Attributes:
        key: Key in :attr:`MetricResult.values`.
        label: Column or row label in tables (the paper's abbreviation where it has one).
        higher_is_better: Direction, shown as an arrow.
        definition: One line stating the convention.
    """

    key: str
    label: str
    higher_is_better: bool
    definition: str


_SPECS = (
    MetricSpec("MAE", "MAE", False, "mean absolute error of the min-max normalised map, per image then mean"),
    MetricSpec("meanEm", "mE", True, "E-measure at 256 thresholds, mean over images then over thresholds"),
    MetricSpec("maxEm", "maxE", True, "E-measure at 256 thresholds, mean over images then max over thresholds"),
    MetricSpec("adpEm", "adpE", True, "E-measure at the adaptive threshold min(2 * mean, 1), mean over images"),
    MetricSpec("Sm", "Sm", True, "S-measure (alpha 0.5), mean over images"),
    MetricSpec("wFm", "wF", True, "weighted F-measure (beta 1), mean over images"),
    MetricSpec("meanDic", "meanDic", True,
               "PraNet: Dice of the normalised map at 256 thresholds, mean over images then thresholds"),
    MetricSpec("meanIoU", "meanIoU", True,
               "PraNet: IoU of the normalised map at 256 thresholds, mean over images then thresholds"),
    MetricSpec("pixel_AUROC", "AUROC", True, "area under the ROC curve of all pixels of the dataset"),
    MetricSpec("pixel_AUPRO", "AUPRO", True,
               "area under the per-region-overlap curve up to FPR 0.3, divided by 0.3 (anomalib)"),
)
METRIC_SPECS: dict[str, MetricSpec] = {spec.key: spec for spec in _SPECS}


def metric_spec(key: str) -> MetricSpec:
    """Return the spec of ``key``; thresholded Dice/IoU keys (``dice@0.5``) are built on demand."""
    if key in METRIC_SPECS:
        return METRIC_SPECS[key]
    kind, _, threshold = key.partition("@")
    if kind in ("dice", "iou") and threshold:
        name = "Dice" if kind == "dice" else "IoU"
        return MetricSpec(
            key, f"{name}@{threshold}", True,
            f"{name} of prob > {threshold}, per image then mean over images (MoNuSeg/GlaS convention)",
        )
    if kind == "pixel_AUPRO" and threshold:
        return MetricSpec(key, f"AUPRO@{threshold}", True,
                          f"area under the per-region-overlap curve up to FPR {threshold}, normalised")
    return MetricSpec(key, key, True, "")


@dataclass
class MetricResult:
    """Scores of one dataset (or one category of a dataset).

    Attributes:
        name: Dataset or category name (a column of the paper's tables).
        n_images: Number of images scored.
        values: Metric key -> score; NaN where undefined (e.g. AUROC without anomalies).
        curves: Optional curve name -> values, e.g. ``"emeasure"``: 256 floats, entry ``k``
            at threshold ``k / 255``.
    """

    name: str
    n_images: int
    values: dict[str, float]
    curves: dict[str, list[float]] | None = field(default=None)

    def to_dict(self, include_curves: bool = True) -> dict[str, Any]:
        """JSON-ready dict; NaN scores become ``None``."""
        data: dict[str, Any] = {
            "name": self.name,
            "n_images": self.n_images,
            "values": {key: _finite_or_none(value) for key, value in self.values.items()},
        }
        if include_curves and self.curves:
            data["curves"] = {key: [_finite_or_none(v) for v in curve] for key, curve in self.curves.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricResult:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: If a field is missing or has the wrong type.
        """
        try:
            values = {str(k): _float_or_nan(v) for k, v in dict(data["values"]).items()}
            curves = data.get("curves")
            if curves is not None:
                curves = {str(k): [_float_or_nan(v) for v in curve] for k, curve in dict(curves).items()}
            return cls(name=str(data["name"]), n_images=int(data["n_images"]), values=values, curves=curves)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a metric result: {error!r}") from error


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _float_or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)
