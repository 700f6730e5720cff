"""Result objects -> JSON, CSV and Markdown tables in the paper's layouts.

Layouts of :func:`format_table`:

* ``"columns"`` (Table 1): one column per dataset/category plus ``Mean`` (the unweighted
  mean over the columns), one row per metric, rows grouped by method.
* ``"wide"`` (Tables 2-3): one row per method; per dataset one column per metric.
* ``"rows"``: one row per dataset/category (and a ``Mean`` row), one column per metric.

Results are a list of :class:`MetricResult` (one method) or a mapping method name -> list
(several methods, as the paper compares). Every output names each metric's convention: the
keys themselves (``dice@0.5`` vs ``meanDic``) and a legend of one-line definitions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

from odssam.errors import OdsSamError
from odssam.metrics.result import MetricResult, metric_spec
from odssam.utils.atomic import atomic_write_text

ResultsLike = Union[Sequence[MetricResult], Mapping[str, Sequence[MetricResult]]]
LAYOUTS = ("columns", "wide", "rows")
REPORT_FORMAT = "odssam-metrics/1"


def _by_method(results: ResultsLike) -> list[tuple[str | None, list[MetricResult]]]:
    if isinstance(results, Mapping):
        return [(str(method), list(group)) for method, group in results.items()]
    return [(None, list(results))]


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def metric_keys(results: ResultsLike) -> list[str]:
    """All metric keys of ``results`` in order of first appearance."""
    return _unique(key for _, group in _by_method(results) for result in group for key in result.values)


def unweighted_mean(results: Sequence[MetricResult], key: str) -> float:
    """Mean of ``key`` over results, each weighing 1 (NaN if any is missing or NaN)."""
    values = [result.values.get(key, math.nan) for result in results]
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return sum(values) / len(values)


def _label(key: str, percent: bool) -> str:
    spec = metric_spec(key)
    unit = "(%)" if _scaled(key, percent) else ""
    return f"{spec.label}{unit}{'↑' if spec.higher_is_better else '↓'}"


def _scaled(key: str, percent: bool) -> bool:
    # Error metrics such as MAE stay fractions, as in the paper's Table 1.
    return percent and metric_spec(key).higher_is_better


def _cell(value: float | None, key: str, digits: int, percent: bool) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "n/a"
    if _scaled(key, percent):
        value *= 100
    return f"{value:.{digits}f}"


def markdown_grid(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown pipe table (shared by the metric reports and ``odssam reproduce``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_legend(keys: Sequence[str]) -> str:
    """One Markdown bullet per metric: label, key and the convention it follows."""
    lines = []
    for key in keys:
        spec = metric_spec(key)
        lines.append(f"- {spec.label} (`{key}`): {spec.definition}" if spec.definition else f"- `{key}`")
    return "\n".join(lines)


def format_table(
    results: ResultsLike,
    layout: str = "columns",
    metrics: Sequence[str] | None = None,
    *,
    digits: int | None = None,
    percent: bool = False,
    mean: bool | None = None,
    legend: bool = True,
) -> str:
    """Markdown table of ``results`` laid out like the paper's tables.

    Args:
        results: One method's results (a list) or a mapping method -> list.
        layout: ``"columns"`` (Table 1), ``"wide"`` (Tables 2-3) or ``"rows"``.
        metrics: Metric keys to show, in order (default: all keys found).
        digits: Decimals shown (default 3, or 2 with ``percent`` as the paper prints).
        percent: Show higher-is-better metrics in percent, as Tables 2-3 do.
        mean: Add the unweighted mean over datasets/categories; by default on for
            ``"columns"`` and ``"rows"`` with several datasets, off for ``"wide"`` (Tables 2-3
            have none).
        legend: Append one line per metric stating its convention.

    Returns:
        The table (and legend) as Markdown text.

    Raises:
        ValueError: On an unknown layout.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if digits is None:
        digits = 2 if percent else 3
    groups = _by_method(results)
    keys = list(metrics) if metrics is not None else metric_keys(results)
    names = _unique(result.name for _, group in groups for result in group)
    show_mean = (layout != "wide" and len(names) > 1) if mean is None else mean
    named = groups[0][0] is not None
    method_column = ["Method"] if named else []

    def value(group: list[MetricResult], name: str, key: str) -> float | None:
        for result in group:
            if result.name == name:
                return result.values.get(key)
        return None

    rows: list[list[str]] = []
    if layout == "columns":
        header = method_column + ["Metric"] + names + (["Mean"] if show_mean else [])
        for method, group in groups:
            for index, key in enumerate(keys):
                row = ([method if index == 0 else ""] if named else []) + [_label(key, percent)]
                row += [_cell(value(group, name, key), key, digits, percent) for name in names]
                if show_mean:
                    row.append(_cell(unweighted_mean(group, key), key, digits, percent))
                rows.append(row)
    elif layout == "wide":
        columns = [(name, key) for name in names + (["Mean"] if show_mean else []) for key in keys]
        header = method_column + [f"{name} {_label(key, percent)}" for name, key in columns]
        for method, group in groups:
            row = [method] if named else []
            for name, key in columns:
                score = unweighted_mean(group, key) if name == "Mean" else value(group, name, key)
                row.append(_cell(score, key, digits, percent))
            rows.append(row)
    else:
        header = method_column + ["Dataset", "Images"] + [_label(key, percent) for key in keys]
        for method, group in groups:
            for result in group:
                row = ([method] if named else []) + [result.name, str(result.n_images)]
                rows.append(row + [_cell(result.values.get(key), key, digits, percent) for key in keys])
            if show_mean:
                row = ([method] if named else []) + ["Mean", str(sum(r.n_images for r in group))]
                rows.append(row + [_cell(unweighted_mean(group, key), key, digits, percent) for key in keys])
    table = markdown_grid(header, rows)
    if legend and keys:
        table += "\n\n" + format_legend(keys)
    return table


def results_to_json(results: ResultsLike, include_curves: bool = True) -> str:
    """JSON text of ``results`` with the definition of every metric key."""
    keys = metric_keys(results)
    data: dict = {"format": REPORT_FORMAT, "conventions": {k: metric_spec(k).definition for k in keys}}
    if isinstance(results, Mapping):
        data["methods"] = {
            str(method): [r.to_dict(include_curves) for r in group] for method, group in results.items()
        }
    else:
        data["results"] = [r.to_dict(include_curves) for r in results]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def results_to_csv(results: ResultsLike, mean: bool = True) -> str:
    """CSV text: one row per result (full precision, NaN as empty), plus a ``Mean`` row per method."""
    keys = metric_keys(results)
    groups = _by_method(results)
    named = groups[0][0] is not None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((["method"] if named else []) + ["name", "n_images"] + keys)

    def number(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else repr(float(value))

    for method, group in groups:
        prefix = [method] if named else []
        for result in group:
            writer.writerow(prefix + [result.name, result.n_images] + [number(result.values.get(k)) for k in keys])
        if mean and len(group) > 1:
            total = sum(r.n_images for r in group)
            writer.writerow(prefix + ["Mean", total] + [number(unweighted_mean(group, k)) for k in keys])
    return buffer.getvalue()


def write_report(
    results: ResultsLike,
    out_dir: str | os.PathLike,
    stem: str = "metrics",
    *,
    layout: str = "columns",
    metrics: Sequence[str] | None = None,
    percent: bool = False,
    digits: int | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>.md`` into ``out_dir`` (atomically).

    Returns:
        Format (``"json"``, ``"csv"``, ``"md"``) -> written path.
    """
    out = Path(out_dir)
    heading = f"# {title or stem}\n\n"
    markdown = heading + format_table(results, layout=layout, metrics=metrics, percent=percent, digits=digits) + "\n"
    return {
        "json": atomic_write_text(out / f"{stem}.json", results_to_json(results)),
        "csv": atomic_write_text(out / f"{stem}.csv", results_to_csv(results)),
        "md": atomic_write_text(out / f"{stem}.md", markdown),
    }


def read_results(path: str | os.PathLike) -> list[MetricResult] | dict[str, list[MetricResult]]:
    """Read a JSON report written by :func:`write_report` (or :func:`results_to_json`).

    Returns:
        A list of results, or a mapping method -> list when the report holds several methods.

    Raises:
        OdsSamError: If the file is missing, not JSON, or not a metrics report.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise OdsSamError(f"{path}: cannot read metrics report ({error.strerror or error})") from error
    except ValueError as error:
        raise OdsSamError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise OdsSamError(f"{path}: not an odssam metrics report (expected format {REPORT_FORMAT!r})")
    try:
        if "methods" in data:
            return {
                str(method): [MetricResult.from_dict(item) for item in group]
                for method, group in dict(data["methods"]).items()
            }
        return [MetricResult.from_dict(item) for item in data["results"]]
    except (KeyError, TypeError, ValueError) as error:
        raise OdsSamError(f"{path}: malformed metrics report ({error})") from error
