"""Output folders that cannot be written, full disks, runs stopped before their first checkpoint, crashes.

Every command checks its output folder before any long work and reports a folder or file
it cannot write as one line (exit code 2); an unexpected error is a crash (exit code 3).
"""

from __future__ import annotations

import errno
import json
import os
import time

import numpy as np
import pytest
import torch
from helpers import TINY_CONFIG, make_unwritable, save_image, save_tiny_checkpoint

import odssam.checkpoint
import odssam.cli.profile
import odssam.engine.trainer
from odssam.cli.main import main
from odssam.checkpoint import load_checkpoint
from odssam.data.synthetic import render_surface


def _write_split(folder, count: int, rng: np.random.Generator) -> None:
    """``count`` generated defect images and their masks, in the folder-dataset layout (images/, masks/)."""
    for index in range(count):
        image, mask, _ = render_surface(rng, 40, 56, defect="blob")
        save_image(image, folder / "images" / f"{index:02d}.png")
        save_image(mask, folder / "masks" / f"{index:02d}.png")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A folder dataset: 4 training and 2 test images."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    _write_split(root / "train", 4, rng)
    _write_split(root / "test", 2, rng)
    return root


def _train_args(*settings: str) -> list[str]:
    args = ["train", "--config", str(TINY_CONFIG), "--device", "cpu", "--no-progress"]
    for setting in ("train.final_eval=false", *settings):
        args += ["--set", setting]
    return args


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"odssam {command}: error: "), err
    return lines[0]


# --------------------------------------------------------------------------- exit codes


def test_help_documents_the_crash_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "3    crash: an unexpected error (a bug in odssam)" in out and "130  interrupted" in out


def test_a_crash_exits_3_and_keeps_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(odssam.cli.profile, "run", broken)
    assert main(["profile"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError: boom" in err
    assert err.strip().splitlines()[-1].startswith("odssam profile: crashed (ZeroDivisionError: boom); this is a bug")


def test_a_refused_write_outside_atomic_writes_is_one_line_exit_2(monkeypatch, capsys):
    def disk_full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/x/tensorboard/events")

    monkeypatch.setattr(odssam.cli.profile, "run", disk_full)
    assert main(["profile"]) == 2
    line = _one_error_line(capsys.readouterr().err, "profile")
    assert line == "odssam profile: error: runs/x/tensorboard/events: No space left on device"


# --------------------------------------------------------------------------- unwritable output folders


def test_metrics_checks_its_output_folder_before_scoring(dataset, tmp_path, monkeypatch, capsys):
    out = tmp_path / "reports"
    make_unwritable(out, monkeypatch)
    masks = dataset / "test" / "masks"
    assert main(["metrics", "--pred", str(masks), "--gt", str(masks), "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert f"output folder {out} is not writable" in _one_error_line(captured.err, "metrics")
    assert captured.out == ""  # nothing scored, no table


@pytest.mark.parametrize("command", ["export", "predict"])
def test_export_and_predict_check_their_output_folder_before_loading_the_model(
    command, dataset, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out" / "new"
    make_unwritable(tmp_path / "out", monkeypatch)
    missing = tmp_path / "no-such-checkpoint.pt"  # never read: the folder is checked first
    inputs = [str(dataset / "test" / "images")] if command == "predict" else []
    assert main([command, "--checkpoint", str(missing), *inputs, "--output", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err, command)
    assert f"output folder {out} is not writable" in line


def test_eval_checks_its_report_folder(tmp_path, monkeypatch, capsys):
    checkpoint = save_tiny_checkpoint(tmp_path / "run" / "last.pt")
    make_unwritable(tmp_path / "reports", monkeypatch)
    args = ["eval", "--checkpoint", str(checkpoint), "--root", str(tmp_path), "--output", str(tmp_path / "reports"),
            "--device", "cpu", "--no-progress"]
    assert main(args) == 2
    assert f"output folder {tmp_path / 'reports'} is not writable" in _one_error_line(capsys.readouterr().err, "eval")


def test_train_checks_its_run_folder_before_building_anything(tmp_path, monkeypatch, capsys):
    make_unwritable(tmp_path / "runs", monkeypatch)
    assert main(_train_args("data.root=/no/such/data", f"train.output_dir={tmp_path / 'runs'}")) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert line.startswith(f"odssam train: error: run folder {tmp_path / 'runs' / 'tiny'} is not writable: ")


# --------------------------------------------------------------------------- a full disk during training


def test_a_full_disk_at_a_checkpoint_stops_with_one_line_and_keeps_the_previous_one(dataset, tmp_path, monkeypatch,
                                                                                      capsys):
    torch.set_num_threads(1)
    real_write = odssam.checkpoint.atomic_write
    saves = []

    def full_from_the_second_save(path, write, **kwargs):
        saves.append(path.name)
        if len(saves) == 1:
            return real_write(path, write, **kwargs)

        def write_until_full(file):
            file.write(b"PK")  # a little gets written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real_write(path, write_until_full, **kwargs)

    monkeypatch.setattr(odssam.checkpoint, "atomic_write", full_from_the_second_save)
    run = tmp_path / "runs" / "tiny"
    assert main(_train_args(f"data.root={dataset}", f"train.output_dir={tmp_path / 'runs'}")) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert line == (f"odssam train: error: cannot write {run / 'last.pt'}: No space left on device "
                    "(the previous file is unchanged)")
    assert saves == ["last.pt", "last.pt"]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert not [p for p in run.rglob("*.tmp")]


# --------------------------------------------------------------------------- resume before the first checkpoint


def _history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_afresh(dataset, tmp_path, monkeypatch,
                                                                                capsys):
    torch.set_num_threads(1)
    fresh = tmp_path / "fresh" / "tiny"
    assert main(_train_args(f"data.root={dataset}", f"train.output_dir={tmp_path / 'fresh'}", "train.epochs=1")) == 0

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(odssam.engine.trainer, "save_epoch_checkpoints", killed)
        assert main(_train_args(f"data.root={dataset}", f"train.output_dir={tmp_path / 'killed'}", "train.epochs=1")) == 130
    run = tmp_path / "killed" / "tiny"
    assert (run / "config.yaml").is_file() and not (run / "last.pt").exists()
    # What a kill during the first checkpoint's write leaves: temporary files of atomic writes;
    # in the embedding cache, which other runs share, only those untouched for a while go.
    orphans = [run / ".last.pt.x1y2z3_q.tmp", run / "splits" / ".split.json.abcdefgh.tmp",
               tmp_path / "killed" / ".embedding-cache" / "v1" / "embedding" / "ab" / ".ab12.npy.abcdefgh.tmp"]
    live = orphans[-1].with_name(".ab34.npy.abcdefgh.tmp")  # maybe another run's write in progress
    for temp in (*orphans, live):
        temp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(b"half a file")
    an_hour_ago = time.time() - 3600
    os.utime(orphans[-1], (an_hour_ago, an_hour_ago))
    capsys.readouterr()

    assert main(["train", "--resume", str(run), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"note: {run} holds no last.pt (the run stopped before its first checkpoint): starting it from epoch 0" in out
    assert "removed 3 unfinished temporary file(s) left by interrupted writes" in out
    assert not any(orphan.exists() for orphan in orphans) and live.exists()
    assert [r["train_loss"] for r in _history(run)] == [r["train_loss"] for r in _history(fresh)]
    resumed, straight = load_checkpoint(run / "last.pt"), load_checkpoint(fresh / "last.pt")
    assert (resumed["epoch"], resumed["step"]) == (straight["epoch"], straight["step"]) == (1, 2)
    for key, value in resumed["prompt_encoder"].items():
        assert torch.equal(value, straight["prompt_encoder"][key]), key


def test_resume_of_a_folder_without_a_run_is_a_clear_error(tmp_path, capsys):
    args = _train_args("data.root=/no/such/data", f"train.output_dir={tmp_path / 'runs'}") + ["--resume"]
    assert main(args) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert line.endswith(f"{tmp_path / 'runs' / 'tiny'}: nothing to resume (no last.pt, no config.yaml); "
                         "start it without --resume")
