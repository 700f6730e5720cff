"""The published figures: exactly as printed, and one for every cell of every table."""

from collections import Counter

import pytest

from odssam.reproduce.paper_results import all_figures, paper_figure, paper_figures
from odssam.reproduce.tables import MEAN_COLUMN, TABLES


def test_counts_per_table():
    counts = {name: len([f for f in paper_figures(name) if f.row in TABLES[name].rows]) for name in TABLES}
    # Table 1: 15 categories + mean, 2 metrics; Table 2: 4 sets x 2; Tables 3-6: rows x 2 sets x 2.
    assert counts == {"table1": 32, "table2": 8, "table3": 4, "table4": 16, "table5": 12, "table6": 12, "table7": 2}
    # The baselines odssam implements, for ``odssam compare``: each a full row of its table.
    baselines = Counter((f.table, f.row) for f in all_figures() if f.row not in TABLES[f.table].rows)
    expected = {("table1", "U-Net"): 32, ("table1", "AutoSAM"): 32, ("table2", "U-Net"): 8}
    assert baselines == {**expected, ("table3", "U-Net"): 4, ("table7", "AutoSAM"): 2}
    keys = [(f.table, f.row, f.column, f.metric) for f in all_figures()]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(("table", "row"), [("table1", "U-Net"), ("table1", "AutoSAM"), ("table2", "U-Net"),
                                            ("table3", "U-Net"), ("table7", "AutoSAM")])  # fmt: skip
def test_a_baseline_row_names_its_cells_as_the_papers_own_row(table, row):
    """Same columns, metric keys and units as the table's own row, so ``odssam compare`` finds them."""
    (own,) = TABLES[table].rows

    def cells(label: str) -> set[tuple[str, str, str]]:
        return {(f.column, f.metric, f.unit) for f in paper_figures(table) if f.row == label}

    assert cells(row) == cells(own)


@pytest.mark.parametrize(
    ("table", "row", "column", "metric", "printed"),
    [
        ("table1", "Our", "pill", "meanEm", "0.947"),
        ("table1", "Our", "metal_nut", "MAE", "0.010"),
        ("table1", "Our", "Mean", "meanEm", "0.904"),
        ("table2", "Ours", "CVC-ClinicDB", "meanDic", "93.0"),
        ("table2", "Ours", "ETIS-LaribPolypDB", "meanIoU", "71.5"),
        ("table3", "Our", "GlaS", "iou@0.5", "87.01"),
        ("table4", "SAM", "MoNuSeg", "dice@0.5", "82.43"),
        ("table5", "3", "MoNuSeg", "iou@0.5", "70.32"),
        ("table6", "2", "GlaS", "dice@0.5", "92.61"),
        ("table7", "Our ODSSAM", "learnable modules", "GFLOPs", "53.902"),
        ("table1", "U-Net", "screw", "meanEm", "0.431"),
        ("table1", "AutoSAM", "transistor", "MAE", "0.063"),
        ("table1", "AutoSAM", "Mean", "meanEm", "0.820"),
        ("table2", "U-Net", "Kvasir", "meanDic", "81.8"),
        ("table2", "U-Net", "ETIS-LaribPolypDB", "meanIoU", "33.5"),
        ("table3", "U-Net", "GlaS", "iou@0.5", "75.12"),  # printed as its Dice
        ("table7", "AutoSAM", "learnable modules", "params_M", "88.569"),
        ("table7", "AutoSAM", "learnable modules", "GFLOPs", "80.314"),
    ],
)
def test_figures_as_printed(table, row, column, metric, printed):
    figure = paper_figure(table, row, column, metric)
    assert figure is not None and figure.printed == printed
    assert figure.digits == len(printed.split(".")[1])


def test_the_full_model_rows_agree_across_tables():
    """Tables 3, 4 (last row), 5 (row 2) and 6 (row 1) print the same model's numbers."""
    rows = {"table3": "Our", "table4": "SAM + OD-SSM + OD Conv", "table5": "2", "table6": "1"}
    values = {
        table: [paper_figure(table, row, c, m).printed for c in ("MoNuSeg", "GlaS") for m in ("dice@0.5", "iou@0.5")]
        for table, row in rows.items()
    }
    assert len({tuple(v) for v in values.values()}) == 1


@pytest.mark.parametrize("name", [n for n in TABLES if n != "table7"])
def test_every_cell_of_a_table_has_a_published_figure(name):
    spec = TABLES[name]
    columns = [key for key, _ in spec.columns] + ([MEAN_COLUMN] if spec.mean_column else [])
    for row in spec.rows:
        for column in columns:
            for metric in spec.metrics:
                assert paper_figure(name, row, column, metric.key) is not None, (row, column, metric.key)
