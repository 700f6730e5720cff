"""``odssam compare``: methods side by side from their run folders, in the paper's layout.

Rows are methods (one label per run, :mod:`odssam.reproduce.methods`; runs sharing a
label form one row, e.g. one model per MVTec AD category), columns the test sets (dataset,
category or PraNet test set) with the paper's metrics for them, then the paper's Table 7
extended: learnable parameters, GFLOPs (``odssam profile``), training hours (summed epoch
wall times, with their device) and prediction speed (measured here, on this device). A
method the paper reports gets its published figures and the difference on two more lines.

Every column holds runs scored on the same test images: runs whose test split differs
(dataset, root, resize or samples) in one column are refused, naming both run folders.
The table goes through the writer ``odssam reproduce`` uses
(:func:`odssam.reproduce.comparison.write_comparison`): ``compare.md`` and ``compare.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odssam.errors import OdsSamError
from odssam.metrics.registry import metric_spec
from odssam.metrics.report import format_legend, markdown_grid
from odssam.reproduce.comparison import Cell, ComparisonTable, write_comparison
from odssam.reproduce.methods import paper_rows
from odssam.reproduce.paper_results import SOURCE, PaperFigure, all_figures
from odssam.reproduce.report import random_weight_parts
from odssam.reproduce.run_folders import FinishedRun, DataIdentity

PARAMS_COLUMN = "Params (M)"
FLOPS_COLUMN = "GFLOPs"
HOURS_COLUMN = "Training (h)"
TABLE7_COLUMN = "learnable modules"
STEM = "compare"


@dataclass
class Method:
    """One row: a label and its runs, each scored on its own test sets."""

    label: str
    runs: list[FinishedRun] = field(default_factory=list)

    def run_for(self, test_set: str) -> FinishedRun | None:
        return next((run for run in self.runs if test_set in run.results), None)


@dataclass(frozen=True)
class MetricColumn:
    """A metric of one test-set column: its key, header and whether it is printed in percent."""

    key: str
    label: str
    percent: bool


@dataclass
class MethodFacts:
    """What is measured per method besides the scores (``None``: not available, with ``why``).

    Attributes:
        params: Learnable parameters.
        flops: FLOPs of the learnable modules for one image.
        images_per_second: Prediction speed on this device.
        frozen_segmenter: Whether the model has a frozen SAM (from its profile; ``None``: not profiled).
        why: ``profile`` or ``speed`` -> the cell's text where the value is missing.
        notes: Lines for under the table (what failed and why).
    """

    params: int | None = None
    flops: int | None = None
    images_per_second: float | None = None
    frozen_segmenter: bool | None = None
    why: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def group_methods(runs: list[FinishedRun], labels: list[str]) -> list[Method]:
    """Runs grouped by label, in the order labels first appear.

    Raises:
        OdsSamError: Two runs of one method scored on the same test set.
    """
    methods: dict[str, Method] = {}
    for run, label in zip(runs, labels):
        method = methods.setdefault(label, Method(label))
        for test_set in run.results:
            other = method.run_for(test_set)
            if other is not None:
                raise OdsSamError(
                    f"runs {other.path} and {run.path} both fill '{label}' on test set '{test_set}': "
                    f"give one of them another name with --label RUN=NAME"
                )
        method.runs.append(run)
    return list(methods.values())


def check_same_test_data(methods: list[Method]) -> dict[str, DataIdentity]:
    """Test set -> its identity, the same for every run scored on it.

    Raises:
        OdsSamError: Two runs scored on different test images under one test-set name.
    """
    seen: dict[str, tuple[FinishedRun, DataIdentity]] = {}
    for method in methods:
        for run in method.runs:
            for test_set, identity in run.test_sets.items():
                if test_set not in seen:
                    seen[test_set] = (run, identity)
                    continue
                first, reference = seen[test_set]
                difference = identity.difference(reference)
                if difference:
                    raise OdsSamError(
                        f"runs {run.path} and {first.path} were tested on different data for '{test_set}' "
                        f"({difference}): compare only runs tested on the same test split"
                    )
    return {test_set: identity for test_set, (_, identity) in seen.items()}


def _paper_metric_units(test_set: str) -> dict[str, str]:
    """Metric key -> unit of the paper's figures for a test set (any row), in file order."""
    units: dict[str, str] = {}
    for figure in all_figures():
        if figure.column.lower() == test_set.lower() and figure.unit in ("%", "fraction"):
            units.setdefault(figure.metric, figure.unit)
    return units


def column_metrics(test_set: str, methods: list[Method]) -> list[MetricColumn]:
    """The paper's metrics of ``test_set`` where the runs have them, else every metric they report."""
    reported = list(
        dict.fromkeys(key for m in methods for run in m.runs for key in run.results.get(test_set, {}))
    )
    units = _paper_metric_units(test_set)
    chosen = [key for key in units if key in reported] or reported
    columns = []
    for key in chosen:
        spec, percent = metric_spec(key), units.get(key) == "%"
        arrow = "↑" if spec.higher_is_better else "↓"
        columns.append(MetricColumn(key, f"{spec.label}{'(%)' if percent else ''}{arrow}", percent))
    return columns


def paper_figure_for(model: dict[str, Any], column: str, metric: str) -> PaperFigure | None:
    """The published figure of this model's first paper row that has ``column`` and ``metric``."""
    for table, row in paper_rows(model):
        for figure in all_figures():
            key = (figure.table, figure.row, figure.column.lower(), figure.metric)
            if key == (table, row, column.lower(), metric):
                return figure
    return None


def _cell(value: float | None, figure: PaperFigure | None, digits: int, why: str | None = None) -> Cell:
    return Cell(
        ours=value,
        paper=figure.value if figure else None,
        digits=figure.digits if figure else digits,
        status=None if value is not None else (why or "n/a"),
    )


def training_hours(method: Method) -> float | None:
    """Hours over all of a method's runs (``None`` if any run recorded none)."""
    if any(run.training is None for run in method.runs):
        return None
    return sum(run.training.hours for run in method.runs)


def build_compare_table(
    methods: list[Method], facts: dict[str, MethodFacts], speed_column: str | None
) -> ComparisonTable:
    """The table: per test set its metric columns, then parameters, GFLOPs, hours and speed."""
    test_sets = list(dict.fromkeys(name for m in methods for run in m.runs for name in run.results))
    cells: dict[tuple[str, str], Cell] = {}
    columns: list[str] = []
    for test_set in test_sets:
        for metric in column_metrics(test_set, methods):
            column = f"{test_set} {metric.label}"
            columns.append(column)
            for method in methods:
                run = method.run_for(test_set)
                if run is None:
                    continue
                value = run.results[test_set].get(metric.key)
                if value is not None and metric.percent:
                    value *= 100
                figure = paper_figure_for(run.model, test_set, metric.key)
                cells[(method.label, column)] = _cell(value, figure, 2 if metric.percent else 3, "no result")
    columns += [PARAMS_COLUMN, FLOPS_COLUMN, HOURS_COLUMN] + ([speed_column] if speed_column else [])
    for method in methods:
        model, known = method.runs[0].model, facts.get(method.label, MethodFacts())
        params = known.params / 1e6 if known.params is not None else None
        flops = known.flops / 1e9 if known.flops is not None else None
        why = known.why.get("profile")
        cells[(method.label, PARAMS_COLUMN)] = _cell(params, paper_figure_for(model, TABLE7_COLUMN, "params_M"), 3, why)
        cells[(method.label, FLOPS_COLUMN)] = _cell(flops, paper_figure_for(model, TABLE7_COLUMN, "GFLOPs"), 3, why)
        cells[(method.label, HOURS_COLUMN)] = _cell(training_hours(method), None, 3, "n/a")
        if speed_column:
            cells[(method.label, speed_column)] = _cell(known.images_per_second, None, 1, known.why.get("speed"))
    return ComparisonTable(
        title="Methods compared on the same test data",
        corner="Method",
        rows=[method.label for method in methods],
        columns=columns,
        cells=cells,
        layout="methods",
        banner=random_weights_banner(methods, facts),
    )


def random_weights_banner(methods: list[Method], facts: dict[str, MethodFacts]) -> str | None:
    """A warning naming the runs whose SAM or ODS feature encoder had random weights.

    A model without a frozen SAM (its profile has no frozen part, e.g. ``unet``) has no SAM to
    warn about; only the ``ods`` prompt encoder starts from feature-encoder weights.
    """
    by_part: dict[str, list[str]] = {}
    for method in methods:
        has_sam = facts.get(method.label, MethodFacts()).frozen_segmenter is not False
        for run in method.runs:
            has_ods = (run.model.get("prompt_encoder") or {}).get("name", "ods") == "ods"
            for part in random_weight_parts(run.config):
                if has_sam and (part == "SAM" or has_ods):
                    by_part.setdefault(part, []).append(run.path.name)
    if not by_part:
        return None
    which = "; ".join(f"{part} in {', '.join(names)}" for part, names in by_part.items())
    return f"RANDOM WEIGHTS ({which}): not comparable to the paper"


def runs_markdown(methods: list[Method], identities: dict[str, DataIdentity]) -> str:
    """Per run: method, test sets, epochs, training hours and device, final model; then the test data."""
    rows = []
    for method in methods:
        for run in method.runs:
            time = run.training
            spent = f"{time.hours:.3f} h on {time.device or 'an unrecorded device'}" if time else "n/a"
            rows.append([method.label, ", ".join(run.results), str(run.epochs), spent, str(run.checkpoint)])
    data_rows = [
        [name, ident.dataset, ident.root, str(ident.image_size or "-"), str(ident.count), ident.fingerprint]
        for name, ident in identities.items()
    ]
    return "\n\n".join([
        "## Runs",
        markdown_grid(["method", "test sets", "epochs", "training time", "final model"], rows),
        "## Test data (the same for every run in a column)",
        markdown_grid(["test set", "dataset", "root", "resized to", "images", "samples fingerprint"], data_rows),
    ])  # fmt: skip


def write_compare_report(
    methods: list[Method],
    identities: dict[str, DataIdentity],
    facts: dict[str, MethodFacts],
    out_dir: Path,
    speed_column: str | None,
    notes: list[str],
) -> dict[str, Path]:
    """Write ``compare.md`` (table, notes, metric conventions, runs, test data) and ``compare.csv``."""
    table = build_compare_table(methods, facts, speed_column)
    table.notes += [
        f"ours: each run folder's final report (report.json); paper: {SOURCE}; Δ = ours - paper",
        "Params (M) and GFLOPs: the learnable modules (`odssam profile`, one image)",
        "Training (h): the epochs' wall time times the processes, summed over a method's runs",
        *notes,
    ]
    keys = list(dict.fromkeys(key for m in methods for run in m.runs for r in run.results.values() for key in r))
    extra = "\n\n".join(["## Metric conventions", format_legend(keys), runs_markdown(methods, identities)])
    return write_comparison(table, out_dir, STEM, extra)
