"""A reproduced table: our cells from the run folders, the paper's, hours and missing data.

:func:`write_table_report` writes, into ``<output>/<table>/``:

* ``<table>.md``: a banner if any run used random weights, the table in the paper's layout
  (ours, paper, difference), the metric conventions, the runs with their hours, and the
  missing datasets;
* ``<table>.csv``: one line per cell (:func:`odssam.reproduce.comparison.comparison_csv`);
* ``<table>-runs.csv``: one line per run: status, device, hours.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import yaml

from odssam.config import to_dict
from odssam.errors import OdsSamError
from odssam.metrics.report import format_legend, markdown_grid
from odssam.reproduce.comparison import Cell, ComparisonTable, write_comparison
from odssam.reproduce.configs import flatten_config
from odssam.reproduce.paper_results import SOURCE, paper_figure
from odssam.reproduce.run_folders import results_by_test_set
from odssam.reproduce.runner import REPORT_FILE, PlannedRun, RunOutcome, hours_by_device
from odssam.reproduce.tables import MEAN_COLUMN, TableSpec
from odssam.utils.atomic import atomic_write_text

# Settings that do not change a run's result: ignored when comparing a run folder's config.
_NEUTRAL_KEYS = {"data.root", "data.num_workers", "train.output_dir", "train.run_name", "train.cache_dir"}


def _column_header(spec: TableSpec, row: str, column: str, metric_label: str) -> tuple[str, str]:
    """``(row label, column label)`` of a cell in the table's layout."""
    if spec.metrics_as_rows:
        return f"{row} {metric_label}", column
    return row, f"{column} {metric_label}"


def _cell_runs(spec: TableSpec, runs: list[PlannedRun]) -> dict[tuple[str, str], PlannedRun]:
    """``(row, column key) -> run`` that fills it."""
    owners = {}
    for run in runs:
        experiment = run.experiment
        keys = [experiment.column] if experiment.column else [key for key, _ in spec.columns]
        for key in keys:
            owners[(experiment.row, key)] = run
    return owners


def _our_values(run: PlannedRun, notes: list[str]) -> dict[str, dict[str, float]]:
    """Test-result name -> metric values from the run's ``report.json`` (empty if none)."""
    path = run.run_dir / REPORT_FILE
    if not path.is_file():
        return {}
    try:
        return results_by_test_set(path)
    except OdsSamError as error:
        notes.append(f"unreadable report of run {run.experiment.run}: {error}")
        return {}


def _absent_status(run: PlannedRun | None, column: str, failed: set[str]) -> str:
    if run is None:
        return "not run"
    if run.data.missing or column in run.data.missing_tests:
        return "missing data"
    if run.experiment.run in failed:
        return "failed"
    if (run.run_dir / REPORT_FILE).is_file():
        return "no result"
    return "not run"


def build_comparison(
    spec: TableSpec, runs: list[PlannedRun], outcomes: list[RunOutcome] | None = None
) -> ComparisonTable:
    """The table of ``spec`` with our values read from the runs' final reports."""
    notes: list[str] = []
    failed = {o.run.experiment.run for o in outcomes or [] if o.action == "failed"}
    owners = _cell_runs(spec, runs)
    values_by_run = {run.experiment.run: _our_values(run, notes) for run in runs}
    table_rows: list[str] = []
    table_columns: list[str] = []
    cells: dict[tuple[str, str], Cell] = {}

    def place(row_label: str, column_label: str, cell: Cell) -> None:
        if row_label not in table_rows:
            table_rows.append(row_label)
        if column_label not in table_columns:
            table_columns.append(column_label)
        cells[(row_label, column_label)] = cell

    for row in spec.rows:
        ours_by_metric: dict[str, dict[str, float]] = {metric.key: {} for metric in spec.metrics}
        for key, header in spec.columns:
            run = owners.get((row, key))
            values = values_by_run.get(run.experiment.run, {}) if run else {}
            if run and run.experiment.column:  # a run filling one column has one test result
                found = next(iter(values.values()), None)
            else:  # several test sets: results are named after them
                found = values.get(key)
            for metric in spec.metrics:
                figure = paper_figure(spec.name, row, key, metric.key)
                cell = Cell(paper=figure.value if figure else None, digits=figure.digits if figure else 3)
                if found is not None and metric.key in found:
                    cell.ours = found[metric.key] * (100 if metric.percent else 1)
                    ours_by_metric[metric.key][key] = cell.ours
                else:
                    cell.status = _absent_status(run, key, failed)
                place(*_column_header(spec, row, header, metric.label), cell)
        for metric in spec.metrics if spec.mean_column else ():
            figure = paper_figure(spec.name, row, MEAN_COLUMN, metric.key)
            cell = Cell(paper=figure.value if figure else None, digits=figure.digits if figure else 3)
            ours = ours_by_metric[metric.key]
            if len(ours) == len(spec.columns) and all(math.isfinite(v) for v in ours.values()):
                cell.ours = sum(ours.values()) / len(ours)
            else:
                cell.status = f"needs all {len(spec.columns)}"
            place(*_column_header(spec, row, MEAN_COLUMN, metric.label), cell)
    return ComparisonTable(
        title=spec.caption,
        corner=spec.corner,
        rows=table_rows,
        columns=table_columns,
        cells=cells,
        layout="stacked" if spec.metrics_as_rows else "side",
        banner=random_weights_banner(runs),
        notes=notes,
    )


# --------------------------------------------------------------------------- weights and configs


def _run_config(run: PlannedRun) -> dict[str, Any]:
    """The config a run folder was trained with (its ``config.yaml``), else the planned one."""
    path = run.run_dir / "config.yaml"
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
        except yaml.YAMLError:
            pass
    return to_dict(run.config)


def random_weight_parts(config: dict[str, Any]) -> list[str]:
    """Which pretrained parts of a config have random weights: ``SAM``, ``feature encoder``.

    The feature encoder counts as random unless its config names a checkpoint
    (``model.prompt_encoder.feature_encoder.checkpoint``; a version without that key has
    no pretrained feature-encoder weights at all).
    """
    model = config.get("model") or {}
    parts = []
    if not (model.get("sam") or {}).get("checkpoint"):
        parts.append("SAM")
    feature_encoder = (model.get("prompt_encoder") or {}).get("feature_encoder") or {}
    if not feature_encoder.get("checkpoint"):
        parts.append("feature encoder")
    return parts


def random_weights_banner(runs: list[PlannedRun]) -> str | None:
    """A loud warning naming the runs whose SAM or feature encoder had random weights."""
    by_part: dict[str, list[str]] = {}
    for run in runs:
        if run.data.missing:
            continue
        for part in random_weight_parts(_run_config(run)):
            by_part.setdefault(part, []).append(run.experiment.run)
    if not by_part:
        return None
    which = "; ".join(f"{part} in {', '.join(names)}" for part, names in by_part.items())
    return f"RANDOM WEIGHTS ({which}): not comparable to the paper"


def config_drift(run: PlannedRun) -> list[str]:
    """Config keys whose value in the run folder differs from the planned run's."""
    path = run.run_dir / "config.yaml"
    if not path.is_file():
        return []
    stored, planned = flatten_config(_run_config(run)), flatten_config(to_dict(run.config))
    keys = sorted(k for k in set(stored) | set(planned) if k not in _NEUTRAL_KEYS and stored.get(k) != planned.get(k))
    return keys


# --------------------------------------------------------------------------- runs, hours, missing data


def _hours_label(device: str) -> str:
    return "GPU-hours" if device.startswith("GPU") else f"{device}-hours"


def _statuses(runs: list[PlannedRun], outcomes: list[RunOutcome] | None) -> dict[str, str]:
    status = {run.experiment.run: run.state for run in runs}
    for outcome in outcomes or []:
        status[outcome.run.experiment.run] = outcome.action + (f" ({outcome.error})" if outcome.error else "")
    return status


def runs_markdown(runs: list[PlannedRun], outcomes: list[RunOutcome] | None = None) -> str:
    """The runs with their status and hours, the total per device, and config drift."""
    statuses = _statuses(runs, outcomes)
    rows, totals, drift = [], {}, []
    for run in runs:
        hours = hours_by_device(run.run_dir)
        for device, value in hours.items():
            totals[device] = totals.get(device, 0.0) + value
        spent = ", ".join(f"{value:.3f} {_hours_label(device)}" for device, value in hours.items()) or "0"
        cell = run.experiment.column or "all test sets"
        status = statuses[run.experiment.run]
        rows.append([run.experiment.run, run.experiment.row, cell, status, spent, str(run.run_dir)])
        changed = config_drift(run)
        if changed:
            drift.append(f"- `{run.experiment.run}` was trained with other values of: {', '.join(changed)}")
    total = "; ".join(f"{value:.3f} {_hours_label(device)} on {device}" for device, value in totals.items())
    parts = [
        "## Runs",
        markdown_grid(["run", "row", "column", "status", "hours", "run folder"], rows),
        f"Total: {total or 'no time recorded yet'} (wall time of every training session, "
        "from each run folder's wall_time.json).",
    ]
    if drift:
        parts.append(
            "Finished runs whose stored config differs from this invocation's (their results are "
            "shown as they are; delete the run folder to retrain):\n" + "\n".join(drift)
        )
    return "\n\n".join(parts)


def missing_lines(runs: list[PlannedRun]) -> list[str]:
    """One line per missing dataset or test set, naming the runs concerned."""
    lines = []
    for run in runs:
        if run.data.missing:
            lines.append(f"{run.data.label} (run {run.experiment.run}): {run.data.missing}")
        for test_set, reason in run.data.missing_tests.items():
            lines.append(f"{run.data.label} test set {test_set} (run {run.experiment.run}): {reason}")
    return lines


def runs_csv(runs: list[PlannedRun], outcomes: list[RunOutcome] | None = None) -> str:
    """One line per run and device: run, row, column, dataset, root, status, device, hours."""
    statuses = _statuses(runs, outcomes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "row", "column", "dataset", "root", "status", "device", "hours"])
    for run in runs:
        hours = hours_by_device(run.run_dir) or {"": 0.0}
        for device, value in hours.items():
            writer.writerow([
                run.experiment.run, run.experiment.row, run.experiment.column or "", run.data.label,
                run.data.root or "", statuses[run.experiment.run], device, repr(value),
            ])  # fmt: skip
    return buffer.getvalue()


def write_table_report(
    spec: TableSpec, runs: list[PlannedRun], out_dir: Path, outcomes: list[RunOutcome] | None = None
) -> dict[str, Path]:
    """Write ``<table>.md``, ``<table>.csv`` and ``<table>-runs.csv`` into ``out_dir``."""
    table = build_comparison(spec, runs, outcomes)
    table.notes.append(f"ours: each run folder's final report ({REPORT_FILE}); paper: {SOURCE}")
    table.notes.append("Δ = ours - paper, in the paper's unit (percentage points for Dice/IoU)")
    if spec.name == "table1":
        table.notes.append("MVTec AD: odssam's seeded split of the abnormal images (the paper's is not public)")
    missing = missing_lines(runs)
    extra = [
        "## Metric conventions",
        format_legend([metric.key for metric in spec.metrics]),
        runs_markdown(runs, outcomes),
        "## Missing datasets",
        "\n".join(f"- {line}" for line in missing) if missing else "none",
    ]
    paths = write_comparison(table, out_dir, spec.name, "\n\n".join(extra))
    paths["runs"] = atomic_write_text(Path(out_dir) / f"{spec.name}-runs.csv", runs_csv(runs, outcomes))
    return paths


def plan_markdown(runs: list[PlannedRun]) -> str:
    """The dry-run listing: per run its config, dataset, root, split sizes and state."""
    rows = []
    for run in runs:
        counts = ", ".join(f"{split} {count}" for split, count in run.data.counts.items()) or "-"
        state = run.state if not run.data.missing else f"MISSING: {run.data.missing}"
        if run.data.missing_tests and not run.data.missing:
            state += "; missing test sets: " + ", ".join(run.data.missing_tests)
        rows.append([
            run.experiment.run, str(run.config_path), run.data.label,
            str(run.data.root or "-"), counts, state,
        ])  # fmt: skip
    return markdown_grid(["run", "config", "dataset", "root", "images", "state"], rows)


def profile_comparison(spec: TableSpec, profile: dict[str, Any]) -> ComparisonTable:
    """Table 7 from :func:`odssam.models.profiling.profile_model`'s report (no training)."""
    learnable = profile["learnable"]
    ours = {
        "GFLOPs": learnable["flops"] / 1e9,
        "GMACs": (learnable["flops"] - learnable["scan_flops"]) / 2e9,
        "params_M": learnable["params"] / 1e6,
    }
    (row,), ((column, _),) = spec.rows, spec.columns
    cells = {}
    for metric in spec.metrics:
        figure = paper_figure(spec.name, row, column, metric.key)
        cells[(row, metric.label)] = Cell(ours[metric.key], figure.value if figure else None, 3)
    return ComparisonTable(
        title=spec.caption,
        corner=spec.corner,
        rows=[row],
        columns=[metric.label for metric in spec.metrics],
        cells=cells,
        notes=[
            f"ours: `odssam profile` of the full prompt encoder (SAM {profile['sam_variant']}, prompt "
            f"input {profile['prompt_input_size']} px); paper: {SOURCE}",
            f"GFLOPs: {profile['convention']}",
            "GMACs: multiply-accumulates of conv/linear/matmul, selective scan excluded; the paper "
            "does not state its convention, and its 53.902 is closest to a MAC count",
        ],
    )
