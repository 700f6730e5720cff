"""A test image that cannot be read is skipped and listed; the others are scored and reported."""

from __future__ import annotations

import json
import shutil

import pytest

from odssam.cli.main import main as odssam_main
from odssam.config import with_overrides
from odssam.engine import run_setup
from odssam.engine.trainer import train


@pytest.fixture
def short_run(tiny_config, folder_dataset, tmp_path):
    """One step trained on a copy of the folder dataset, no final evaluation: (run folder, data root)."""
    root = shutil.copytree(folder_dataset, tmp_path / "data")
    cfg = with_overrides(tiny_config, {"data.root": str(root), "train.max_steps": 1, "train.final_eval": False})
    return train(cfg, progress=False).run_dir, root


def _eval(run_dir, *extra: str) -> int:
    out = run_dir / "eval"
    return odssam_main(["eval", "--checkpoint", str(run_dir / "last.pt"), "--output", str(out), "--no-progress", *extra])


def test_eval_scores_the_readable_images_and_exits_1(short_run, capsys):
    run_dir, root = short_run
    assert _eval(run_dir) == 0
    broken = root / "test" / "masks" / "test00.png"
    broken.write_bytes(broken.read_bytes()[:50])
    assert _eval(run_dir) == 1
    captured = capsys.readouterr()
    assert f"skipped test00: {broken}: cannot decode" in captured.err
    assert "1 sample(s) could not be read and were skipped" in captured.err
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert [result["n_images"] for result in report["results"]] == [1]  # test01, scored
    assert "- test00: " in (run_dir / "eval" / "report.md").read_text()
    assert [s["name"] for s in json.loads((run_dir / "eval" / "report-skipped.json").read_text())] == ["test00"]


def test_skip_missing_scores_a_stored_split_whose_entries_are_gone(short_run, capsys):
    run_dir, root = short_run
    (root / "test" / "images" / "test01.png").unlink()
    (root / "test" / "masks" / "test01.png").unlink()
    assert _eval(run_dir) == 2
    err = capsys.readouterr().err
    assert "1 test name(s) not found" in err and "odssam eval --skip-missing scores the others" in err
    assert _eval(run_dir, "--skip-missing") == 1
    err = capsys.readouterr().err
    assert f"skipped test01: listed in {run_dir / 'splits' / 'split.json'}, not found in {root}" in err
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert [result["n_images"] for result in report["results"]] == [1]


def test_final_evaluation_of_a_run_skips_a_test_image_damaged_during_training(tiny_config, folder_dataset, tmp_path,
                                                                               monkeypatch, capsys):
    root = shutil.copytree(folder_dataset, tmp_path / "data")
    real_check = run_setup.checked_splits
    damaged = root / "test" / "images" / "test01.png"

    def check_then_damage(*args, **kwargs):
        splits = real_check(*args, **kwargs)  # the check passes; the file breaks afterwards
        damaged.write_bytes(damaged.read_bytes()[:70])
        return splits

    monkeypatch.setattr(run_setup, "checked_splits", check_then_damage)
    result = train(with_overrides(tiny_config, {"data.root": str(root), "train.max_steps": 1}), progress=False)
    assert [r.n_images for r in result.test_results] == [1]
    assert f"skipped test01: {damaged}: cannot decode" in capsys.readouterr().out
    assert "- test01: " in (result.run_dir / "report.md").read_text()
    assert json.loads((result.run_dir / "report.json").read_text())["results"][0]["n_images"] == 1
    assert (result.run_dir / "report-skipped.json").is_file()
    assert len(result.test_skipped) == 1
    assert result.test_skipped[0].startswith(f"skipped test01: {damaged}: cannot decode")



def test_train_exits_1_when_its_final_evaluation_skipped_a_test_image(tiny_config, folder_dataset, tmp_path,
                                                                      monkeypatch, capsys):
    from odssam.config import save_config

    root = shutil.copytree(folder_dataset, tmp_path / "data")
    damaged = root / "test" / "images" / "test01.png"
    real_check = run_setup.checked_splits

    def check_then_damage(*args, **kwargs):
        splits = real_check(*args, **kwargs)
        damaged.write_bytes(damaged.read_bytes()[:70])
        return splits

    monkeypatch.setattr(run_setup, "checked_splits", check_then_damage)
    config = tmp_path / "run.yaml"
    save_config(with_overrides(tiny_config, {"data.root": str(root), "train.max_steps": 1}), config)
    assert odssam_main(["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "1 test image(s) skipped as unreadable" in capsys.readouterr().out
