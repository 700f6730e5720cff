"""``odssam reproduce table3`` on the CPU with the tiny model: train, skip, resume, report."""

import csv
import json

import numpy as np
import torch
import yaml
from data_layouts import make_glas, make_monuseg

from odssam.cli.main import main
from odssam.reproduce.paper_results import paper_figure


def _reproduce(data_root, output, sets, *extra):
    arguments = ["reproduce", "table3", "--data-root", str(data_root), "--output", str(output), "--no-progress"]
    return main([*arguments, *sets, *extra])


def _cells(table_dir):
    with open(table_dir / "table3.csv", newline="") as handle:
        return {(row["row"], row["column"]): row for row in csv.DictReader(handle)}


def _sessions(run_dir):
    return json.loads((run_dir / "wall_time.json").read_text())["sessions"]


def test_table3_trains_skips_and_resumes(tmp_path, tiny_sets, capsys):
    rng = np.random.default_rng(0)
    data_root, output = tmp_path / "data", tmp_path / "out"
    make_monuseg(data_root / "MoNuSeg", rng)
    table_dir = output / "table3"
    monuseg, glas = table_dir / "monuseg", table_dir / "glas"

    # 1. GlaS is missing: MoNuSeg trains, GlaS is skipped and reported, the command succeeds.
    assert _reproduce(data_root, output, tiny_sets) == 0
    assert (monuseg / "report.json").is_file() and not glas.exists()
    assert [s["outcome"] for s in _sessions(monuseg)] == ["trained"]
    cells = _cells(table_dir)
    assert cells[("Our", "GlaS Dice(%)")]["status"] == "missing data" and cells[("Our", "GlaS Dice(%)")]["ours"] == ""
    markdown = (table_dir / "table3.md").read_text()
    assert "RANDOM WEIGHTS (SAM in monuseg; feature encoder in monuseg): not comparable to the paper" in markdown
    missing = markdown.split("## Missing datasets")[1]
    assert "glas (run glas): not usable" in missing and "monuseg" not in missing

    # 2. GlaS appears: the finished MoNuSeg run is skipped, GlaS trains.
    make_glas(data_root / "GlaS", rng)
    report_time = (monuseg / "report.json").stat().st_mtime_ns
    assert _reproduce(data_root, output, tiny_sets) == 0
    assert (monuseg / "report.json").stat().st_mtime_ns == report_time
    assert len(_sessions(monuseg)) == 1 and [s["outcome"] for s in _sessions(glas)] == ["trained"]
    for run_dir in (monuseg, glas):  # --set reached every run
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["model"]["sam"]["variant"] == "vit_micro" and cfg["train"]["epochs"] == 1
        assert cfg["data"]["image_size"] == 32
    cells = _cells(table_dir)
    assert len(cells) == 4 and {row["status"] for row in cells.values()} == {"ok"}
    for dataset, run_dir in (("MoNuSeg", monuseg), ("GlaS", glas)):
        (result,) = json.loads((run_dir / "report.json").read_text())["results"]
        for key, label in (("dice@0.5", "Dice(%)"), ("iou@0.5", "IoU(%)")):
            cell = cells[("Our", f"{dataset} {label}")]
            paper = paper_figure("table3", "Our", dataset, key).value
            assert float(cell["ours"]) == result["values"][key] * 100
            assert float(cell["paper"]) == paper
            assert float(cell["difference"]) == float(cell["ours"]) - paper
    markdown = (table_dir / "table3.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert header.startswith("| Method | MoNuSeg Dice(%) ours | MoNuSeg Dice(%) paper | MoNuSeg Dice(%) Δ |")
    ours_line = next(line for line in markdown.splitlines() if line.startswith("| Our |"))
    assert "| 84.02 |" in ours_line and "| 87.01 |" in ours_line
    assert "## Missing datasets\n\nnone" in markdown
    with open(table_dir / "table3-runs.csv", newline="") as handle:
        runs = {row["run"]: row for row in csv.DictReader(handle)}
    assert runs["monuseg"]["status"] == "finished earlier" and runs["glas"]["status"] == "trained"
    assert float(runs["glas"]["hours"]) == sum(s["seconds"] for s in _sessions(glas)) / 3600 > 0
    kind = "GPU" if torch.cuda.is_available() else "CPU"  # the runs take the default device
    assert runs["glas"]["device"].startswith(kind) and f"{kind}-hours on {kind}" in markdown

    # 3. An interrupted MoNuSeg run (last.pt, no final report) is resumed, here for one more epoch.
    (monuseg / "report.json").unlink()
    capsys.readouterr()
    assert _reproduce(data_root, output, tiny_sets, "--set", "train.epochs=2") == 0
    assert "[monuseg] resuming" in capsys.readouterr().out
    assert [s["outcome"] for s in _sessions(monuseg)] == ["trained", "resumed"]
    epochs = [json.loads(line)["epoch"] for line in (monuseg / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and (monuseg / "report.json").is_file()
    assert len(_sessions(glas)) == 1
    markdown = (table_dir / "table3.md").read_text()
    assert "`glas` was trained with other values of: train.epochs" in markdown
    hours = sum(s["seconds"] for run in (monuseg, glas) for s in _sessions(run)) / 3600
    assert f"Total: {hours:.3f} {kind}-hours on {kind}" in markdown


def test_no_dataset_at_all_still_writes_the_table(tmp_path, tiny_sets):
    (tmp_path / "data").mkdir()
    assert _reproduce(tmp_path / "data", tmp_path / "out", tiny_sets) == 0
    cells = _cells(tmp_path / "out" / "table3")
    assert {row["status"] for row in cells.values()} == {"missing data"}
    assert {row["paper"] for row in cells.values()} == {"84.02", "72.52", "92.74", "87.01"}
    markdown = (tmp_path / "out" / "table3" / "table3.md").read_text()
    assert "- monuseg (run monuseg): not usable" in markdown and "- glas (run glas): not usable" in markdown
    assert "no time recorded yet" in markdown and "RANDOM WEIGHTS" not in markdown
