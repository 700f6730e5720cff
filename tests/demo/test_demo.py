"""``odssam demo`` in a shortened form, and how it chooses its SAM weights and output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import read_pixels
from PIL import Image

from odssam.cli.main import main
from odssam.demo import run as demo_run
from odssam.checkpoint import load_checkpoint
from odssam.demo.run import DemoOptions, choose_output_dir, choose_sam
from odssam.errors import OdsSamError
from odssam.inference import read_predictions_csv
from odssam.models.sam import build_sam

SHORT = ["--images-per-defect", "2", "--image-size", "64", "--epochs", "1", "--max-steps", "2", "--batch-size", "2"]


@pytest.fixture(scope="module")
def demo_run_output(tmp_path_factory):
    """A shortened demo (random SAM, no download) into a relative --output: (exit code, output folder)."""
    torch.set_num_threads(1)
    output = tmp_path_factory.mktemp("demo") / "out"
    capture = pytest.MonkeyPatch()
    capture.setenv("ODSSAM_CACHE_DIR", str(output.parent / "empty-cache"))
    capture.chdir(output.parent)
    try:
        code = main(["demo", "--output", "out", "--no-download", "--device", "cpu", "--no-progress", *SHORT])
    finally:
        capture.undo()
    return code, output


def test_demo_writes_report_overlays_grid_and_checkpoint(demo_run_output):
    code, output = demo_run_output
    assert code == 0
    for relative in ("README.md", "report.md", "report.csv", "report.json", "figure_grid.png", "run/last.pt"):
        assert (output / relative).is_file(), relative
    rows = read_predictions_csv(output / "predictions" / "predictions.csv")
    assert len(rows) == 3  # half of the 2 images of each of the 3 defect types
    for row in rows:
        overlay = read_pixels(output / "predictions" / "overlays" / f"{row['name']}.png")
        assert overlay.shape == (64, 64, 3)
    grid = Image.open(output / "figure_grid.png")
    assert grid.width > 4 * 100 and grid.height > 3 * 100  # 4 columns, 3 rows


def test_the_demo_run_can_be_evaluated_from_another_folder(demo_run_output, tmp_path, monkeypatch, capsys):
    _, output = demo_run_output
    stored = load_checkpoint(output / "run" / "last.pt")["config"]["data"]["root"]
    assert Path(stored).is_absolute() and Path(stored) == (output / "data").resolve()
    monkeypatch.chdir(tmp_path)  # the demo ran from output's parent
    code = main(["eval", "--checkpoint", str(output / "run" / "last.pt"), "--device", "cpu", "--no-progress",
                 "--output", "eval"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "eval" / "report.md").is_file()


def test_demo_says_loudly_that_sam_weights_are_random(demo_run_output):
    _, output = demo_run_output
    readme = (output / "README.md").read_text()
    assert "RANDOM WEIGHTS" in readme and "NOT meaningful" in readme and "--no-download" in readme
    assert "RANDOM SAM weights" in (output / "report.md").read_text()


def test_demo_report_holds_the_anomaly_metrics(demo_run_output):
    _, output = demo_run_output
    header = (output / "report.csv").read_text().splitlines()[0]
    for key in ("dice@0.5", "AUROC", "AUPRO"):
        assert key.lower() in header.lower()


def test_a_second_demo_into_the_same_folder_is_refused(demo_run_output, capsys):
    _, output = demo_run_output
    assert main(["demo", "--output", str(output), "--no-download", *SHORT]) == 2
    assert "already holds a demo run" in capsys.readouterr().err


def test_default_output_folder_is_never_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(choose_output_dir(None)) == "odssam-demo"
    (tmp_path / "odssam-demo").mkdir()
    (tmp_path / "odssam-demo-2").mkdir()
    assert str(choose_output_dir(None)) == "odssam-demo-3"


def test_failed_download_falls_back_to_random_weights(monkeypatch):
    def offline(*args, **kwargs):
        raise OdsSamError("could not download: network unreachable")

    monkeypatch.setattr("odssam.models.checkpoints.download_checkpoint", offline)
    choice = choose_sam(DemoOptions(progress=False))
    assert choice.checkpoint is None and "download failed" in choice.why_random
    assert "RANDOM" in demo_run.random_weights_banner(choice.why_random)


def test_a_given_sam_checkpoint_is_used_with_its_variant_and_size(tmp_path):
    path = tmp_path / "sam_micro.pth"
    torch.save(build_sam("vit_micro", image_size=128).state_dict(), path)
    choice = choose_sam(DemoOptions(sam_checkpoint=str(path)))
    assert (choice.variant, choice.image_size, choice.checkpoint) == ("vit_micro", 128, str(path))
    config = demo_run.demo_config(DemoOptions(), choice, tmp_path, tmp_path)
    assert config.model.sam.checkpoint == str(path) and config.model.sam.image_size == 128


def test_bad_flags_are_user_errors(capsys):
    assert main(["demo", "--images-per-defect", "1", "--no-download"]) == 2
    assert "--images-per-defect" in capsys.readouterr().err
