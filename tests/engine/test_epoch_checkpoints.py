"""When a training run writes its checkpoints (train.checkpoint_interval_s), and what the epoch record says of it."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

import odssam.engine.trainer as trainer
from odssam.checkpoint import load_checkpoint
from odssam.config import with_overrides
from odssam.engine import checkpoint_writer
from odssam.engine.epoch_end import EpochCheckpoints
from odssam.engine.checkpoint_writer import CheckpointWriter
from odssam.engine.logging import format_epoch_summary
from odssam.engine.trainer import train

from test_checkpoint_writer import assert_same

NO_REPORT = {"train.final_eval": False}


@pytest.fixture
def saves(monkeypatch):
    """``(file name, epoch)`` of every checkpoint written, in order."""
    written = []
    real_save = checkpoint_writer.save_checkpoint

    def recording(path, payload):
        written.append((path.name, payload["epoch"]))
        return real_save(path, payload)

    monkeypatch.setattr(checkpoint_writer, "save_checkpoint", recording)
    return written


def counting_clock(monkeypatch) -> None:
    """The run's checkpoint clock reads 0, 1, 2, ... (one tick per look): intervals in looks, not seconds."""
    ticks = itertools.count()
    monkeypatch.setattr(trainer, "EpochCheckpoints", functools.partial(EpochCheckpoints, clock=lambda: next(ticks)))


def test_the_interval_counts_from_the_start_of_the_previous_write():
    now = [0.0]
    checkpoints = EpochCheckpoints(CheckpointWriter(background=False), interval_s=10, clock=lambda: now[0])
    due = []
    for now[0] in (5.0, 12.0, 15.0, 21.0, 22.5, 23.0):
        due.append(checkpoints.last_due(final=False))
        if due[-1]:
            checkpoints.last_started = now[0]
    assert due == [False, True, False, False, True, False]
    assert checkpoints.last_due(final=True)
    assert EpochCheckpoints(CheckpointWriter(background=False), interval_s=0, clock=lambda: 0.0).last_due(final=False)


def test_interval_0_writes_last_pt_after_every_epoch(tiny_config, saves):
    result = train(with_overrides(tiny_config, {**NO_REPORT, "train.epochs": 3}), progress=False)
    assert saves == [("last.pt", 1), ("last.pt", 2), ("last.pt", 3)]
    assert [r["checkpoint_written"] for r in result.history] == [True, True, True]


def test_a_long_interval_writes_last_pt_after_the_last_epoch_only(tiny_config, saves):
    cfg = with_overrides(tiny_config, {**NO_REPORT, "train.epochs": 3, "train.checkpoint_interval_s": 3600})
    result = train(cfg, progress=False)
    assert saves == [("last.pt", 3)]
    assert [r["checkpoint_written"] for r in result.history] == [False, False, True]
    assert all(r["checkpoint_seconds"] < 0.01 for r in result.history[:2])  # nothing to snapshot
    assert load_checkpoint(result.run_dir / "last.pt")["step"] == result.steps == 9


def test_best_pt_does_not_wait_for_the_interval(tiny_config, saves):
    changes = {**NO_REPORT, "train.epochs": 3, "train.checkpoint_interval_s": 3600, "data.val_count": 2}
    result = train(with_overrides(tiny_config, changes), progress=False)
    improved = [r["epoch"] for r in result.history if r["best"]]
    assert improved and improved[0] == 1
    best_saves = [epoch for name, epoch in saves if name == "best.pt"]
    assert best_saves == improved
    assert [epoch for name, epoch in saves if name == "last.pt"] == [3]
    assert load_checkpoint(result.run_dir / "best.pt")["epoch"] == improved[-1]


def test_max_steps_ending_the_run_writes_last_pt(tiny_config, saves):
    changes = {**NO_REPORT, "train.epochs": 5, "train.max_steps": 4, "train.checkpoint_interval_s": 3600}
    result = train(with_overrides(tiny_config, changes), progress=False)
    assert result.epochs == 2 and result.steps == 4
    assert saves == [("last.pt", 2)]
    assert load_checkpoint(result.run_dir / "last.pt")["step"] == 4


@pytest.mark.parametrize("background", [True, False], ids=["async", "sync"])
def test_the_epoch_record_splits_the_epoch_time(tiny_config, background):
    changes = {**NO_REPORT, "train.epochs": 2, "train.checkpoint_async": background, "data.val_count": 2}
    result = train(with_overrides(tiny_config, changes), progress=False)
    for record in result.history:
        parts = record["step_seconds"] + record["validation_seconds"] + record["checkpoint_seconds"]
        assert record["step_seconds"] > 0 and record["validation_seconds"] > 0 and record["checkpoint_seconds"] > 0
        assert parts <= record["epoch_seconds"] <= parts + 1.0  # the rest: the record and the best-metric update
        line = format_epoch_summary(record, 2, "dice@0.5", result.best_metric)
        assert "\n" not in line and f"last.pt {record['checkpoint_seconds']:.1f} s" in line


# The runs compared bit for bit below train on the CPU: what they test is how checkpoints are
# written and resumed, the same on every device, while two CUDA runs may differ in the last bits
# (atomics in the backward); the resume test of test_trainer.py covers CUDA, with deterministic kernels.
ON_CPU = "cpu"


def test_async_and_sync_runs_write_the_same_checkpoints(tiny_config):
    runs = {}
    for background in (True, False):
        changes = {**NO_REPORT, "train.epochs": 2, "train.checkpoint_async": background,
                   "train.run_name": f"async_{background}", "data.val_count": 2}
        runs[background] = train(with_overrides(tiny_config, changes), device=ON_CPU, progress=False).run_dir
    for name in ("last.pt", "best.pt"):
        # load_checkpoint checks the digests
        written, reference = (load_checkpoint(runs[background] / name) for background in (True, False))
        for payload in (written, reference):
            payload["config"]["train"].pop("checkpoint_async")
            payload["config"]["train"].pop("run_name")
            payload.pop("digest")
        assert_same(written, reference, name)


def test_a_run_resumed_from_an_interval_checkpoint_ends_as_an_uninterrupted_one(tiny_config, monkeypatch, saves):
    straight = train(with_overrides(tiny_config, {**NO_REPORT, "train.epochs": 4, "train.run_name": "straight"}),
                     device=ON_CPU, progress=False)
    # Clock ticks: 0 at the start; epoch 1 looks at 1 (< 2: no write); epoch 2 at 2 (written,
    # started at 3); epoch 3 at 4 (no write). Then the run dies in epoch 4.
    counting_clock(monkeypatch)
    real_epoch = trainer.train_one_epoch

    def dies_in_epoch_4(ctx, parts, state, epoch, logs):
        if epoch == 4:
            raise KeyboardInterrupt
        return real_epoch(ctx, parts, state, epoch, logs)

    changes = {**NO_REPORT, "train.epochs": 4, "train.run_name": "killed", "train.checkpoint_interval_s": 2}
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "train_one_epoch", dies_in_epoch_4)
        with pytest.raises(KeyboardInterrupt):
            train(with_overrides(tiny_config, changes), device=ON_CPU, progress=False)
    assert saves == [("last.pt", 1), ("last.pt", 2), ("last.pt", 3), ("last.pt", 4), ("last.pt", 2)]
    killed = straight.run_dir.parent / "killed"
    assert load_checkpoint(killed / "last.pt")["epoch"] == 2

    resumed = train(with_overrides(tiny_config, changes), resume=True, device=ON_CPU, progress=False)
    assert resumed.epochs == 4 and resumed.steps == straight.steps
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    expected = straight.model.prompt_encoder.state_dict()
    for key, value in resumed.model.prompt_encoder.state_dict().items():
        assert torch.equal(value, expected[key]), key
    ended, uninterrupted = load_checkpoint(killed / "last.pt"), load_checkpoint(straight.run_dir / "last.pt")
    assert_same(ended["optimizer"], uninterrupted["optimizer"])
