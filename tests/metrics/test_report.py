"""Tables in the paper's layouts, JSON/CSV/Markdown reports and their round trip."""

import csv
import io
import json
import math

import pytest

from odssam.errors import OdsSamError
from odssam.metrics.report import (
    format_table,
    read_results,
    results_to_csv,
    results_to_json,
    unweighted_mean,
    write_report,
)
from odssam.metrics.result import MetricResult


def _categories():
    return [
        MetricResult("pill", 10, {"MAE": 0.004, "meanEm": 0.947}),
        MetricResult("cable", 30, {"MAE": 0.020, "meanEm": 0.833}),
        MetricResult("bottle", 2, {"MAE": 0.018, "meanEm": 0.936}),
    ]


def _rows(table):
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_columns_layout_is_table_one_with_unweighted_mean():
    table = format_table(_categories(), layout="columns", legend=False)
    header, _, mae_row, em_row = _rows(table)
    assert header == ["Metric", "pill", "cable", "bottle", "Mean"]
    assert mae_row == ["MAE↓", "0.004", "0.020", "0.018", "0.014"]
    # Unweighted: each category counts once whatever its number of images (weighted would be 0.867).
    assert em_row[-1] == "0.905"
    assert unweighted_mean(_categories(), "meanEm") == pytest.approx((0.947 + 0.833 + 0.936) / 3)


def test_columns_layout_groups_rows_by_method():
    results = {"AutoSAM": _categories(), "Ours": _categories()[:2]}
    rows = _rows(format_table(results, layout="columns", legend=False))
    assert rows[0] == ["Method", "Metric", "pill", "cable", "bottle", "Mean"]
    assert [row[0] for row in rows[2:]] == ["AutoSAM", "", "Ours", ""]
    assert rows[4][4] == "-"  # Ours has no bottle result


def test_wide_layout_is_tables_two_three_in_percent():
    results = {
        "Ours": [MetricResult("Kvasir", 100, {"meanDic": 0.9123, "meanIoU": 0.8621}),
                 MetricResult("ETIS", 196, {"meanDic": 0.7, "meanIoU": math.nan})],
    }
    rows = _rows(format_table(results, layout="wide", percent=True, digits=2, legend=False))
    assert rows[0] == ["Method", "Kvasir meanDic(%)↑", "Kvasir meanIoU(%)↑",
                       "ETIS meanDic(%)↑", "ETIS meanIoU(%)↑"]
    assert rows[2] == ["Ours", "91.23", "86.21", "70.00", "n/a"]


def test_rows_layout_and_legend_name_each_convention():
    results = [MetricResult("MoNuSeg", 14, {"dice@0.5": 0.8, "iou@0.5": 0.67, "meanDic": 0.78, "MAE": 0.1})]
    table = format_table(results, layout="rows", percent=True)
    rows = _rows(table)
    assert rows[0] == ["Dataset", "Images", "Dice@0.5(%)↑", "IoU@0.5(%)↑", "meanDic(%)↑", "MAE↓"]
    assert rows[2] == ["MoNuSeg", "14", "80.00", "67.00", "78.00", "0.10"]  # percent: 2 decimals
    assert "prob > 0.5, per image then mean over images" in table
    assert "PraNet" in table and "256 thresholds" in table


def test_unknown_layout():
    with pytest.raises(ValueError, match="layout"):
        format_table(_categories(), layout="diagonal")


def test_write_report_round_trip(tmp_path):
    results = _categories()
    results[0].curves = {"emeasure": [0.5] * 256}
    results[1].values["pixel_AUROC"] = math.nan
    written = write_report(results, tmp_path / "out", "mvtec", title="MVTec AD")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mvtec.csv", "mvtec.json", "mvtec.md"]
    assert written["md"].read_text().startswith("# MVTec AD\n\n| Metric | pill |")

    back = read_results(written["json"])
    assert [r.name for r in back] == ["pill", "cable", "bottle"]
    assert back[0].curves["emeasure"] == [0.5] * 256
    assert math.isnan(back[1].values["pixel_AUROC"])
    assert back[2].values == results[2].values
    data = json.loads(written["json"].read_text())
    assert data["results"][1]["values"]["pixel_AUROC"] is None
    assert "MAE" in data["conventions"]

    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text())))
    assert [row["name"] for row in rows] == ["pill", "cable", "bottle", "Mean"]
    assert float(rows[3]["MAE"]) == pytest.approx((0.004 + 0.020 + 0.018) / 3)
    assert rows[1]["pixel_AUROC"] == ""


def test_methods_round_trip_through_json(tmp_path):
    results = {"Ours": _categories()[:1], "U-Net": _categories()[1:]}
    path = tmp_path / "r.json"
    path.write_text(results_to_json(results))
    back = read_results(path)
    assert list(back) == ["Ours", "U-Net"]
    assert [r.name for r in back["U-Net"]] == ["cable", "bottle"]
    assert results_to_csv(results).splitlines()[0] == "method,name,n_images,MAE,meanEm"


def test_read_results_errors_name_the_file(tmp_path):
    with pytest.raises(OdsSamError, match="missing.json"):
        read_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OdsSamError, match="bad.json: not valid JSON"):
        read_results(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"results": []}))
    with pytest.raises(OdsSamError, match="other.json: not an odssam metrics report"):
        read_results(other)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"format": "odssam-metrics/1", "results": [{"name": "x"}]}))
    with pytest.raises(OdsSamError, match="broken.json: malformed"):
        read_results(broken)
