"""The paper's published figures, read from ``paper_results.csv``.

Source: Huang, Li, Wen, Zhang, "Omni-Dimensional State Space Model-driven SAM for
Pixel-level Anomaly Detection", IJCAI 2025 (accepted version): the "Our"/"Ours" rows of
Tables 1-3, every row of the ablation Tables 4-6 and the "Our ODSSAM" row of Table 7;
and the rows of the baselines odssam implements (``odssam compare``): "U-Net" of Tables
1-3 and "AutoSAM" of Tables 1 and 7. Table 3 prints U-Net's GlaS Dice and IoU both as
75.12; the CSV keeps that. The CSV holds each figure exactly as printed (``printed``, a
string: "93.0" keeps its digit) with its unit:

* ``fraction``: MAE and mE of Table 1, as printed (0..1);
* ``%``: Dice and IoU of Tables 2-6, in percent;
* ``GFLOPs`` and ``1e6`` (parameters in millions): Table 7.

Rows and columns use the paper's row labels and odssam's dataset names (MVTec AD
categories as ``metal_nut``, PraNet test sets as ``CVC-ColonDB`` ...); metrics use
odssam's metric keys (``MAE``, ``meanEm``, ``meanDic``/``meanIoU`` for the polyp sets,
``dice@0.5``/``iou@0.5`` for MoNuSeg and GlaS; see :mod:`odssam.metrics.result`).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

SOURCE = "Huang et al., ODS-SAM, IJCAI 2025 (accepted version), Tables 1-7"
_FILE = "paper_results.csv"


@dataclass(frozen=True)
class PaperFigure:
    """One published number.

    Attributes:
        table: ``table1`` .. ``table7``.
        row: The paper's row label (method or ablation variant).
        column: Category, dataset or test set.
        metric: odssam metric key (``meanDic``, ``dice@0.5``, ``MAE`` ...).
        printed: The figure as printed, digits included.
        unit: ``fraction``, ``%``, ``GFLOPs`` or ``1e6``.
    """

    table: str
    row: str
    column: str
    metric: str
    printed: str
    unit: str

    @property
    def value(self) -> float:
        return float(self.printed)

    @property
    def digits(self) -> int:
        """Decimals the paper printed (``93.0`` -> 1)."""
        return len(self.printed.partition(".")[2])


@functools.lru_cache(maxsize=1)
def all_figures() -> tuple[PaperFigure, ...]:
    """Every published figure of the CSV, in file order."""
    text = resources.files("odssam.reproduce").joinpath(_FILE).read_text(encoding="utf-8")
    return tuple(PaperFigure(**row) for row in csv.DictReader(text.splitlines()))


def paper_figures(table: str) -> list[PaperFigure]:
    """The published figures of one table."""
    return [figure for figure in all_figures() if figure.table == table]


def paper_figure(table: str, row: str, column: str, metric: str) -> PaperFigure | None:
    """The published figure of one cell, or ``None`` where the paper prints none."""
    for figure in all_figures():
        if (figure.table, figure.row, figure.column, figure.metric) == (table, row, column, metric):
            return figure
    return None
