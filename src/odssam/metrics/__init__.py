"""Evaluation metrics and reports, computed the way the field's reference tools compute them.

* :mod:`~odssam.metrics.sod`: MAE, E-measure, S-measure, weighted F (PySODMetrics).
* :mod:`~odssam.metrics.dice`: Dice/IoU at a fixed threshold and PraNet's meanDic/meanIoU.
* :mod:`~odssam.metrics.anomaly`: pixel AUROC and AUPRO (anomalib).
* :mod:`~odssam.metrics.evaluator`: streaming :class:`Evaluator` -> :class:`MetricResult`.
* :mod:`~odssam.metrics.report`: JSON/CSV/Markdown in the paper's table layouts.
* :mod:`~odssam.metrics.figures`: qualitative figure grids (paper Figs. 3-4).
"""

from odssam.metrics.anomaly import PixelScoreAccumulator, pixel_aupro, pixel_auroc
from odssam.metrics.evaluator import DEFAULT_METRICS, METRIC_NAMES, Evaluator, resolve_metrics
from odssam.metrics.figures import figure_grid, save_figure_grid
from odssam.metrics.report import (
    format_table,
    read_results,
    results_to_csv,
    results_to_json,
    unweighted_mean,
    write_report,
)
from odssam.metrics.result import METRIC_SPECS, MetricResult, MetricSpec, metric_spec

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_NAMES",
    "METRIC_SPECS",
    "Evaluator",
    "MetricResult",
    "MetricSpec",
    "PixelScoreAccumulator",
    "figure_grid",
    "format_table",
    "metric_spec",
    "pixel_aupro",
    "pixel_auroc",
    "read_results",
    "resolve_metrics",
    "results_to_csv",
    "results_to_json",
    "save_figure_grid",
    "unweighted_mean",
    "write_report",
]
