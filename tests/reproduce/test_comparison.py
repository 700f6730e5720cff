"""The ours-vs-paper table writer: Markdown layouts and the long CSV."""

import csv
import io

import pytest

from odssam.reproduce.comparison import Cell, ComparisonTable, comparison_csv, format_comparison, write_comparison


def _table(layout: str) -> ComparisonTable:
    return ComparisonTable(
        title="Table X",
        corner="Method",
        rows=["Ours"],
        columns=["A Dice(%)", "B Dice(%)"],
        cells={
            ("Ours", "A Dice(%)"): Cell(ours=84.5, paper=84.02, digits=2),
            ("Ours", "B Dice(%)"): Cell(ours=None, paper=92.74, digits=2, status="missing data"),
        },
        layout=layout,
        banner="RANDOM WEIGHTS (SAM): not comparable to the paper",
        notes=["a note"],
    )


def test_side_layout_puts_ours_paper_and_difference_next_to_each_other():
    text = format_comparison(_table("side"))
    lines = text.splitlines()
    assert lines[0] == "> **RANDOM WEIGHTS (SAM): not comparable to the paper**"
    header = next(line for line in lines if line.startswith("| Method"))
    assert header == (
        "| Method | A Dice(%) ours | A Dice(%) paper | A Dice(%) Δ | B Dice(%) ours | B Dice(%) paper | B Dice(%) Δ |"
    )
    row = next(line for line in lines if line.startswith("| Ours"))
    assert row == "| Ours | 84.50 | 84.02 | +0.48 | missing data | 92.74 | - |"
    assert "- a note" in lines


def test_stacked_layout_has_three_lines_per_row():
    lines = format_comparison(_table("stacked")).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Method"))
    assert lines[start] == "| Method |  | A Dice(%) | B Dice(%) |"
    assert lines[start + 2 : start + 5] == [
        "| Ours | ours | 84.50 | missing data |",
        "|  | paper | 84.02 | 92.74 |",
        "|  | Δ | +0.48 | - |",
    ]


def test_csv_is_one_line_per_cell_at_full_precision():
    rows = list(csv.DictReader(io.StringIO(comparison_csv(_table("side")))))
    assert [r["column"] for r in rows] == ["A Dice(%)", "B Dice(%)"]
    assert float(rows[0]["ours"]) == 84.5 and float(rows[0]["paper"]) == 84.02
    assert float(rows[0]["difference"]) == pytest.approx(0.48)
    assert rows[0]["status"] == "ok"
    assert rows[1]["ours"] == "" and rows[1]["difference"] == "" and rows[1]["status"] == "missing data"


def test_cell_text_rounding():
    assert Cell(ours=0.0904, paper=0.0904, digits=3).text("difference") == "+0.000"  # not -0.000
    assert Cell(ours=0.00001, paper=0.0004, digits=3).text("difference") == "+0.000"
    assert Cell(ours=91.49, paper=92.1, digits=1).text("difference") == "-0.6"
    assert Cell(ours=float("nan"), paper=1.0).text("ours") == "n/a"
    assert Cell(paper=1.0).text("ours") == "-"


def test_write_comparison(tmp_path):
    paths = write_comparison(_table("side"), tmp_path / "out", "tableX", "## More\n\ntext")
    assert paths["md"].read_text().rstrip().endswith("## More\n\ntext")
    assert paths["csv"].read_text().startswith("row,column,ours,paper,difference,status\n")


def test_unknown_layout():
    with pytest.raises(ValueError, match="layout"):
        ComparisonTable("t", "c", [], [], layout="diagonal")


def test_methods_layout_adds_paper_lines_only_under_rows_the_paper_reports():
    table = ComparisonTable(
        title="Compared",
        corner="Method",
        rows=["ODS-SAM", "U-Net"],
        columns=["A Dice(%)", "Params (M)"],
        cells={
            ("ODS-SAM", "A Dice(%)"): Cell(ours=84.5, paper=84.02, digits=2),
            ("ODS-SAM", "Params (M)"): Cell(ours=53.0, digits=3),
            ("U-Net", "A Dice(%)"): Cell(ours=80.0, digits=2),
            ("U-Net", "Params (M)"): Cell(status="n/a"),
        },
        layout="methods",
    )
    lines = format_comparison(table).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Method"))
    assert lines[start + 2 :] == [
        "| ODS-SAM | ours | 84.50 | 53.000 |",
        "|  | paper | 84.02 | - |",
        "|  | Δ | +0.48 | - |",
        "| U-Net | ours | 80.00 | n/a |",
    ]
