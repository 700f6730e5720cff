"""Result objects of an evaluation.

Every reported number has a key that names its convention (``dice@0.5`` is not ``meanDic``);
:func:`metric_spec` gives each key a table label, a direction and a one-line definition that
reports print as a legend. The specs belong to the metrics' entries in
:mod:`odssam.metrics.registry`; they are re-exported here for the report writers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from odssam.metrics.registry import METRIC_SPECS, MetricSpec, metric_spec

__all__ = ["METRIC_SPECS", "MetricResult", "MetricSpec", "metric_spec"]


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
