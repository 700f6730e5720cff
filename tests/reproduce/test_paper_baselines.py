"""``odssam compare`` under the baselines the paper reports: U-Net (Tables 1-3) and AutoSAM (Tables 1, 7)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from odssam.reproduce import methods
from odssam.reproduce.compare import MethodFacts, group_methods, write_compare_report
from odssam.reproduce.paper_results import paper_figure
from odssam.reproduce.run_folders import DataIdentity, FinishedRun

KVASIR_DICE = "Kvasir meanDic(%)↑"
BOTTLE_MAE = "bottle MAE↓"


def _finished(name: str, model_name: str, results: dict[str, dict[str, float]]) -> FinishedRun:
    """A finished run of ``model_name`` scored on ``results``' test sets (same test data for every run)."""
    identities = {test_set: DataIdentity(test_set, f"/data/{test_set}", 352, "abc", 100) for test_set in results}
    config = {"model": {"name": model_name}, "data": {"dataset": "pranet"}}
    return FinishedRun(Path(name), config, results, identities, Path(name) / "last.pt", None, 100)


def _compare_csv(tmp_path: Path, runs: list[FinishedRun], facts: dict[str, MethodFacts]):
    method_rows = group_methods(runs, methods.method_labels(runs))
    identities = {name: identity for run in runs for name, identity in run.test_sets.items()}
    written = write_compare_report(method_rows, identities, facts, tmp_path, None, [])
    with open(written["csv"], newline="", encoding="utf-8") as handle:
        cells = {(row["row"], row["column"]): row for row in csv.DictReader(handle)}
    return cells, written["md"].read_text(encoding="utf-8")


def test_unet_and_autosam_runs_get_the_papers_baseline_figures(tmp_path):
    scores = {"Kvasir": {"meanDic": 0.80, "meanIoU": 0.70}, "bottle": {"MAE": 0.02, "meanEm": 0.9}}
    runs = [_finished("kvasir_unet", "unet", scores), _finished("kvasir_autosam", "autosam", scores)]
    autosam_params = 88_219_548
    facts = {"AutoSAM": MethodFacts(params=autosam_params, flops=int(80e9)), "U-Net": MethodFacts(params=31_000_000)}
    cells, markdown = _compare_csv(tmp_path, runs, facts)

    # U-Net: Table 2's Kvasir Dice (81.8 %) and Table 1's bottle MAE; the paper gives no U-Net size.
    unet_dice = cells[("U-Net", KVASIR_DICE)]
    assert float(unet_dice["paper"]) == paper_figure("table2", "U-Net", "Kvasir", "meanDic").value == 81.8
    assert float(unet_dice["difference"]) == pytest.approx(80.0 - 81.8)
    assert float(cells[("U-Net", BOTTLE_MAE)]["paper"]) == 0.028
    assert cells[("U-Net", "Params (M)")]["paper"] == ""

    # AutoSAM: Table 7's parameters (88.569 M) and GFLOPs; Table 1's bottle MAE; no Kvasir row in Table 2.
    params = cells[("AutoSAM", "Params (M)")]
    assert float(params["paper"]) == paper_figure("table7", "AutoSAM", "learnable modules", "params_M").value == 88.569
    assert float(params["difference"]) == pytest.approx(autosam_params / 1e6 - 88.569)
    assert float(cells[("AutoSAM", "GFLOPs")]["paper"]) == 80.314
    assert float(cells[("AutoSAM", BOTTLE_MAE)]["paper"]) == 0.018
    assert cells[("AutoSAM", KVASIR_DICE)]["paper"] == ""

    # The Markdown prints a paper line and a Δ line under both methods.
    lines = markdown.splitlines()
    for label, published in (("U-Net", "| 81.8 |"), ("AutoSAM", "| 88.569 |")):
        first = lines.index(next(line for line in lines if line.startswith(f"| {label} | ours |")))
        assert lines[first + 1].startswith("|  | paper |") and lines[first + 2].startswith("|  | Δ |")
        assert published in lines[first + 1]


def test_only_the_baselines_own_rows_are_theirs():
    assert methods.paper_rows({"name": "unet"}) == [("table1", "U-Net"), ("table2", "U-Net"), ("table3", "U-Net")]
    assert methods.paper_rows({"name": "autosam"}) == [("table1", "AutoSAM"), ("table7", "AutoSAM")]
    assert methods.paper_rows({"name": "sam_noprompt"}) == []  # the paper has no prompt-free SAM row
