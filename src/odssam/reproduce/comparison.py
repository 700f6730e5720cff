"""Our numbers next to the paper's: one comparison table -> Markdown and CSV.

A :class:`ComparisonTable` is a grid of labelled rows and columns whose cells each hold our
value, the paper's value and their difference (ours - paper), all in the unit the paper
prints (percent for Dice/IoU, fractions for MAE and mE). Two Markdown layouts:

* ``"side"`` (Tables 2-7): one row per method; per column three columns ``ours``,
  ``paper``, ``Δ`` side by side;
* ``"stacked"`` (Table 1, 16 columns wide): per row three lines ``ours``, ``paper``, ``Δ``;
* ``"methods"`` (``odssam compare``): as ``"stacked"``, but a row without any published
  figure (a method the paper does not report) keeps only its ``ours`` line.

The CSV is long: one line per cell (row, column, ours, paper, difference, status), full
precision, so scripts need not parse Markdown. Nothing here knows about runs or datasets,
so any command comparing numbers with the paper can use it: ``odssam reproduce`` (paper
tables) and ``odssam compare`` (methods across run folders) both write through
:func:`write_comparison`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from odssam.metrics.report import markdown_grid
from odssam.utils.atomic import atomic_write_text

LAYOUTS = ("side", "stacked", "methods")
CSV_HEADER = ("row", "column", "ours", "paper", "difference", "status")


@dataclass
class Cell:
    """One compared number.

    Attributes:
        ours: Our value in the paper's unit, or ``None``.
        paper: The paper's value, or ``None`` where it prints none.
        digits: Decimals shown (the paper's).
        status: Why ``ours`` is absent (``"missing dataset"``, ``"not run"`` ...), else ``None``.
    """

    ours: float | None = None
    paper: float | None = None
    digits: int = 3
    status: str | None = None

    @property
    def difference(self) -> float | None:
        if self.ours is None or self.paper is None or math.isnan(self.ours):
            return None
        return self.ours - self.paper

    def text(self, which: str) -> str:
        """Markdown text of ``ours``, ``paper`` or ``difference``."""
        if which == "ours" and self.ours is None:
            return self.status or "-"
        value = getattr(self, which)
        if value is None:
            return "-"
        if math.isnan(value):
            return "n/a"
        if which == "difference":
            rounded = round(value, self.digits) or 0.0  # no "-0.00"
            return f"{rounded:+.{self.digits}f}"
        return f"{value:.{self.digits}f}"


@dataclass
class ComparisonTable:
    """A paper table with our values beside the published ones.

    Attributes:
        title: Heading (the paper's caption).
        corner: Header of the row-label column (``Method``, ``Metric`` ...).
        rows: Row labels, in order.
        columns: Column labels, in order.
        cells: ``(row, column) -> Cell``; absent pairs print as ``-``.
        layout: ``"side"``, ``"stacked"`` or ``"methods"``.
        banner: A warning printed above the table (e.g. random weights), or ``None``.
        notes: Lines printed under the table.
    """

    title: str
    corner: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    layout: str = "side"
    banner: str | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")

    def cell(self, row: str, column: str) -> Cell:
        return self.cells.get((row, column), Cell())


def format_comparison(table: ComparisonTable) -> str:
    """The table as Markdown: banner, title, grid, notes."""
    parts = []
    if table.banner:
        parts.append(f"> **{table.banner}**")
    parts.append(f"## {table.title}")
    kinds = ("ours", "paper", "difference")
    if table.layout == "side":
        header = [table.corner] + [f"{column} {label}" for column in table.columns for label in ("ours", "paper", "Δ")]
        grid = [
            [row] + [table.cell(row, column).text(kind) for column in table.columns for kind in kinds]
            for row in table.rows
        ]
    else:
        header = [table.corner, ""] + list(table.columns)
        grid = []
        for row in table.rows:
            published = table.layout == "stacked" or any(table.cell(row, c).paper is not None for c in table.columns)
            for kind, label in zip(kinds if published else kinds[:1], ("ours", "paper", "Δ")):
                first = row if kind == "ours" else ""
                grid.append([first, label] + [table.cell(row, column).text(kind) for column in table.columns])
    parts.append(markdown_grid(header, grid))
    if table.notes:
        parts.append("\n".join(f"- {note}" for note in table.notes))
    return "\n\n".join(parts) + "\n"


def comparison_csv(table: ComparisonTable) -> str:
    """One line per cell: row, column, ours, paper, difference (full precision), status."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)

    def number(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else repr(float(value))

    for row in table.rows:
        for column in table.columns:
            if (row, column) not in table.cells:
                continue
            cell = table.cells[(row, column)]
            status = cell.status or ("ok" if cell.ours is not None else "")
            writer.writerow([row, column, number(cell.ours), number(cell.paper), number(cell.difference), status])
    return buffer.getvalue()


def write_comparison(
    table: ComparisonTable, out_dir: str | os.PathLike, stem: str, extra_markdown: str = ""
) -> dict[str, Path]:
    """Write ``<stem>.md`` (table plus ``extra_markdown``) and ``<stem>.csv`` atomically.

    Returns:
        ``{"md": path, "csv": path}``.
    """
    out = Path(out_dir)
    markdown = format_comparison(table) + (f"\n{extra_markdown.rstrip()}\n" if extra_markdown else "")
    return {
        "md": atomic_write_text(out / f"{stem}.md", markdown),
        "csv": atomic_write_text(out / f"{stem}.csv", comparison_csv(table)),
    }
