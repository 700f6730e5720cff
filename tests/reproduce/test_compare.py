"""``odssam compare``: two tiny runs trained on generated data, compared in one table and figure."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import write_folder_split
from helpers import TINY_CONFIG
from PIL import Image

from odssam.cli.main import main
from odssam.config import ModelConfig, from_dict
from odssam.models.profiling import profile_model
from odssam.reproduce import methods
from odssam.reproduce.compare import Method, MethodFacts, build_compare_table, paper_figure_for, random_weights_banner
from odssam.reproduce.measure import FIGURE_CELL
from odssam.reproduce.paper_results import PaperFigure, paper_figure
from odssam.reproduce.run_folders import DataIdentity, FinishedRun, read_run_folder

FULL, NO_ODCONV = "ODS-SAM (use_odconv=True)", "ODS-SAM (use_odconv=False)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two finished one-epoch runs of configs/tiny.yaml on the same data: the full model and one without ODConv."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    write_folder_split(root / "data" / "train", 4, rng, "train")
    write_folder_split(root / "data" / "test", 3, rng, "test")
    folders = {}
    for name, extra in (("full", []), ("no_odconv", ["model.prompt_encoder.use_odconv=false"])):
        settings = [
            f"data.root={root / 'data'}", f"train.output_dir={root / 'runs'}", f"train.run_name={name}",
            f"train.cache_dir={root / 'cache'}", "train.epochs=1", *extra,
        ]  # fmt: skip
        arguments = ["train", "--config", str(TINY_CONFIG), "--device", "cpu", "--no-progress"]
        assert main(arguments + [part for s in settings for part in ("--set", s)]) == 0
        folders[name] = root / "runs" / name
    return folders


def _compare(tmp_path, *arguments) -> int:
    return main(["compare", *map(str, arguments), "--output", str(tmp_path / "out"), "--device", "cpu"])


def _cells(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "compare.csv", newline="", encoding="utf-8") as handle:
        return {(row["row"], row["column"]): row for row in csv.DictReader(handle)}


def _epoch_hours(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return sum(record["epoch_seconds"] for record in records) / 3600


def test_compare_writes_the_table_csv_and_figure(runs, tmp_path, capsys):
    code = _compare(
        tmp_path, runs["full"], runs["no_odconv"], "--speed-images", 2, "--batch-size", 2, "--images", 2
    )
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "out"
    cells = _cells(out)
    speed_column = "Predict img/s (CPU)"
    for label, run_dir in ((FULL, runs["full"]), (NO_ODCONV, runs["no_odconv"])):
        (result,) = json.loads((run_dir / "report.json").read_text())["results"]
        # A test set the paper does not report: every metric of the report, as fractions.
        for key, header in (("dice@0.5", "Dice@0.5↑"), ("iou@0.5", "IoU@0.5↑"), ("MAE", "MAE↓")):
            assert float(cells[(label, f"folder {header}")]["ours"]) == result["values"][key]
        model = from_dict(ModelConfig, read_run_folder(run_dir).model, "model")
        learnable = profile_model(model)["learnable"]
        assert float(cells[(label, "Params (M)")]["ours"]) == learnable["params"] / 1e6
        assert float(cells[(label, "GFLOPs")]["ours"]) == learnable["flops"] / 1e9
        assert float(cells[(label, "Training (h)")]["ours"]) == pytest.approx(_epoch_hours(run_dir))
        assert float(cells[(label, speed_column)]["ours"]) > 0
    # Only the full model is a row of the paper: Table 7's published size, and the difference.
    published = paper_figure("table7", "Our ODSSAM", "learnable modules", "params_M").value
    assert float(cells[(FULL, "Params (M)")]["paper"]) == published
    assert cells[(NO_ODCONV, "Params (M)")]["paper"] == "" and cells[(NO_ODCONV, "GFLOPs")]["difference"] == ""

    markdown = (out / "compare.md").read_text()
    lines = markdown.splitlines()
    first = lines.index(next(line for line in lines if line.startswith(f"| {FULL} | ours |")))
    assert lines[first + 1].startswith("|  | paper |") and lines[first + 2].startswith("|  | Δ |")
    assert lines[first + 3].startswith(f"| {NO_ODCONV} | ours |")  # no paper lines for the variant
    assert "RANDOM WEIGHTS" in markdown and "h on cpu" in markdown  # the epochs recorded their device

    figure = Image.open(out / "figure-folder.png")
    # Image, ground truth and one column per method (no overlay), two test images.
    assert 4 * FIGURE_CELL < figure.width < 5 * FIGURE_CELL + 200
    assert 2 * FIGURE_CELL < figure.height < 3 * FIGURE_CELL + 100
    assert "wrote" in capsys.readouterr().out


def test_runs_tested_on_different_data_are_refused(runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(runs["no_odconv"], other)
    split_path = other / "splits" / "split.json"
    split = json.loads(split_path.read_text())
    split["splits"]["test"] = split["splits"]["test"][:2]
    split_path.write_text(json.dumps(split))
    assert _compare(tmp_path, runs["full"], other, "--no-speed", "--images", 0) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert str(runs["full"]) in error and str(other) in error and "different data for 'folder'" in error

    split["splits"]["test"] = json.loads((runs["full"] / "splits" / "split.json").read_text())["splits"]["test"]
    split["root"] = "/elsewhere"
    split_path.write_text(json.dumps(split))
    assert _compare(tmp_path, runs["full"], other, "--no-speed", "--images", 0) == 2
    assert "root /elsewhere vs" in capsys.readouterr().err

    # Same split, but the other run's final evaluation could not read one test image.
    split_path.write_text((runs["full"] / "splits" / "split.json").read_text())
    (other / "report-skipped.json").write_text(json.dumps([{"name": "test01", "reason": "truncated file"}]))
    assert _compare(tmp_path, runs["full"], other, "--no-speed", "--images", 0) == 2
    assert "(skipped as unreadable: test01 vs none)" in capsys.readouterr().err


def test_labels_and_missing_training_time(runs, tmp_path, capsys):
    older = tmp_path / "older"
    shutil.copytree(runs["no_odconv"], older)
    (older / "metrics.jsonl").unlink()  # a run without recorded epoch times
    arguments = [runs["full"], older, "--no-speed", "--images", 0, "--label", f"{older}=Baseline"]
    assert _compare(tmp_path, *arguments) == 0, capsys.readouterr().err
    cells = _cells(tmp_path / "out")
    assert cells[("Baseline", "Training (h)")]["ours"] == "" and cells[("Baseline", "Training (h)")]["status"] == "n/a"
    assert not any(column.startswith("Predict img/s") for _, column in cells)
    assert not (tmp_path / "out" / "figure-folder.png").exists()

    # Two runs named alike on the same test set cannot share a row.
    clash = [runs["full"], older, "--no-speed", "--images", 0, "--label", "older=Same"]
    clash += ["--label", f"{runs['full']}=Same"]
    assert _compare(tmp_path, *clash) == 2
    assert "both fill 'Same' on test set 'folder'" in capsys.readouterr().err


def test_an_unfinished_run_folder_is_refused(runs, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs["full"], unfinished)
    (unfinished / "report.json").unlink()
    assert _compare(tmp_path, runs["full"], unfinished, "--no-speed") == 2
    assert f"{unfinished}: not a finished run folder (no report.json" in capsys.readouterr().err
    assert main(["compare", str(runs["full"]), "--label", "nonsense"]) == 2
    assert "expected RUN=NAME" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.write_text("a file where the output folder should go")
    assert main(["compare", str(runs["full"]), "--output", str(occupied), "--no-speed"]) == 2
    assert f"output folder {occupied} is a file, not a folder" in capsys.readouterr().err


def test_a_model_that_cannot_be_loaded_here_still_gets_its_table_row(runs, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(runs["full"], broken, ignore=shutil.ignore_patterns("*.pt"))
    (broken / "last.pt").write_bytes(b"not a checkpoint")
    assert _compare(tmp_path, broken, "--speed-images", 1, "--images", 2) == 0, capsys.readouterr().err
    cells = _cells(tmp_path / "out")
    assert cells[(methods.display_name({}), "Predict img/s (CPU)")]["status"] == "n/a"
    assert f"{broken / 'last.pt'} not loaded, no speed or figure" in (tmp_path / "out" / "compare.md").read_text()
    assert not (tmp_path / "out" / "figure-folder.png").exists()


# --------------------------------------------------------------------------- the paper's rows and columns


def _finished(name: str, model: dict, results: dict) -> FinishedRun:
    identity = DataIdentity("monuseg", "/data/MoNuSeg", 512, "abc", 14)
    config = {"model": model, "data": {"dataset": "monuseg"}}
    return FinishedRun(Path(name), config, results, {"monuseg": identity}, Path(name) / "last.pt", None, 200)


def test_a_paper_test_set_takes_the_papers_metrics_in_percent_and_its_figures():
    full = _finished("full", {"name": "ods_sam"}, {"monuseg": {"dice@0.5": 0.8, "iou@0.5": 0.7, "MAE": 0.1}})
    scores = {"monuseg": {"dice@0.5": 0.75, "iou@0.5": 0.6}}
    variant = _finished("odssm", {"prompt_encoder": {"use_odconv": False}}, scores)
    table = build_compare_table([Method("ODS-SAM", [full]), Method("SAM + OD-SSM", [variant])], {}, None)
    assert table.columns == ["monuseg Dice@0.5(%)↑", "monuseg IoU@0.5(%)↑", "Params (M)", "GFLOPs", "Training (h)"]
    cell = table.cell("ODS-SAM", "monuseg Dice@0.5(%)↑")
    assert cell.ours == pytest.approx(80.0) and cell.paper == paper_figure("table3", "Our", "MoNuSeg", "dice@0.5").value
    ablation = table.cell("SAM + OD-SSM", "monuseg IoU@0.5(%)↑")
    assert ablation.paper == paper_figure("table4", "SAM + OD-SSM", "MoNuSeg", "iou@0.5").value
    assert table.cell("ODS-SAM", "Training (h)").text("ours") == "n/a"
    assert table.cell("ODS-SAM", "Params (M)").text("ours") == "n/a"  # not profiled here


def test_paper_rows_of_ablation_variants_and_other_models(monkeypatch):
    assert paper_figure_for({"prompt_encoder": {"odconv": {"num_layers": 3}}}, "GlaS", "dice@0.5") == paper_figure(
        "table5", "3", "GlaS", "dice@0.5"
    )
    assert paper_figure_for({"prompt_encoder": {"ssm": {"num_layers": 2}}}, "MoNuSeg", "iou@0.5") == paper_figure(
        "table6", "2", "MoNuSeg", "iou@0.5"
    )
    assert methods.paper_rows({"prompt_encoder": {"odconv": {"arrangement": "stacked"}}}) == []
    published = PaperFigure("table2", "AutoSAM", "Kvasir", "meanDic", "88.0", "%")
    monkeypatch.setattr(methods, "all_figures", lambda: (published,))
    assert methods.paper_rows({"name": "autosam"}) == [("table2", "AutoSAM")]
    assert methods.paper_rows({"name": "unet"}) == []


@pytest.mark.parametrize("device, expected", [("cpu", "cpu"), ("cuda:1", "NVIDIA H200")])
def test_each_epoch_records_its_device_and_processes(device, expected, monkeypatch):
    from types import SimpleNamespace

    from odssam.config import ExperimentConfig
    from odssam.engine.distributed import DistInfo
    from odssam.engine.epoch import EpochStats, RunState
    from odssam.engine.epoch_end import epoch_record
    from odssam.engine.run_setup import RunContext

    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda where: asked.append(where) or "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda where: 2**30)
    info = DistInfo(world_size=4, device=torch.device(device))
    ctx = RunContext(ExperimentConfig(), info, None, None, resume=False, progress=False)
    parts = SimpleNamespace(optimizer=SimpleNamespace(param_groups=[{"lr": 1e-3}]))
    stats = EpochStats(train_loss=0.5, seconds=2.0, images_per_second=5.0, model_values={})
    record = epoch_record(ctx, parts, RunState(epoch=1, step=3), 1, stats, None, False)
    assert record["device"] == expected and record["world_size"] == 4 and record["epoch_seconds"] == 2.0
    assert asked == ([torch.device(device)] if expected != "cpu" else [])


def test_the_random_weights_banner_names_only_parts_a_model_has():
    ods = _finished("ods", {"name": "ods_sam", "sam": {"checkpoint": None}}, {"monuseg": {}})
    unet = _finished("unet", {"name": "unet", "sam": {"checkpoint": None}}, {"monuseg": {}})
    noprompt = _finished("noprompt", {"name": "sam_noprompt", "prompt_encoder": {"name": "noprompt"}}, {"monuseg": {}})
    rows = [Method("ODS-SAM", [ods]), Method("U-Net", [unet]), Method("SAM (no prompt)", [noprompt])]
    facts = {"ODS-SAM": MethodFacts(frozen_segmenter=True), "U-Net": MethodFacts(frozen_segmenter=False)}
    banner = random_weights_banner(rows, facts)
    assert banner == "RANDOM WEIGHTS (SAM in ods, noprompt; feature encoder in ods): not comparable to the paper"
    assert random_weights_banner(rows[1:2], facts) is None
