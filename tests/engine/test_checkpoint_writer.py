"""The background checkpoint writer: snapshots, order, errors on the training thread."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch

import odssam.checkpoint
from odssam.checkpoint import checkpoint_payload, load_checkpoint
from odssam.config import ExperimentConfig
from odssam.engine import checkpoint_writer
from odssam.engine.checkpoint_writer import CheckpointWriter, settle_pending_writes
from odssam.errors import OdsSamError


class Trained:
    """A small module after one Adam step (with a schedule): every state a last.pt holds."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=1e-2)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=10)
        self.step()

    def step(self) -> None:
        self.module.train()
        loss = self.module(torch.randn(6, 4)).square().mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()

    def payload(self) -> dict:
        return checkpoint_payload(ExperimentConfig(name="writer"), self.module, "fingerprint", epoch=1, step=1,
                                  best_metric=0.5, optimizer=self.optimizer, scheduler=self.scheduler)


def assert_same(got, want, where: str = "") -> None:
    """Equal entry by entry: tensors by dtype, shape and value, containers recursively."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and torch.equal(got, want), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            assert_same(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), where
        for index, (a, b) in enumerate(zip(got, want)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert got == want, where


@pytest.fixture
def held_writes(monkeypatch):
    """Writes of the background writer wait for ``release.set()`` before they start."""
    release = threading.Event()
    real_save = checkpoint_writer.save_checkpoint

    def held(path, payload):
        assert release.wait(timeout=30)
        return real_save(path, payload)

    monkeypatch.setattr(checkpoint_writer, "save_checkpoint", held)
    return release


def test_background_and_inline_writes_store_the_same_payload(tmp_path):
    trained = Trained()
    with CheckpointWriter(background=True) as background:
        background.submit([(tmp_path / "background.pt", trained.payload())])
    with CheckpointWriter(background=False) as inline:
        inline.submit([(tmp_path / "inline.pt", trained.payload())])
    written = load_checkpoint(tmp_path / "background.pt")  # loading checks the digest
    reference = load_checkpoint(tmp_path / "inline.pt")
    assert written["digest"] == reference["digest"]
    assert_same(written, reference)
    assert written["optimizer"]["state"] and written["scheduler"]["last_epoch"] == 1


def test_what_training_does_after_submit_does_not_change_what_is_written(tmp_path, held_writes):
    trained = Trained()
    before = {key: value.clone() for key, value in trained.module.state_dict().items()}
    optimizer_state = trained.optimizer.state_dict()["state"]
    moments = {index: {k: v.clone() for k, v in state.items()} for index, state in optimizer_state.items()}
    with CheckpointWriter(background=True) as writer:
        writer.submit([(tmp_path / "last.pt", trained.payload())])
        for _ in range(3):  # in place: weights, BatchNorm statistics, Adam's step, exp_avg, exp_avg_sq
            trained.step()
        with torch.no_grad():
            trained.module[0].weight.add_(1.0)
        held_writes.set()
    stored = load_checkpoint(tmp_path / "last.pt")
    assert not torch.equal(trained.module[0].weight, before["0.weight"])
    assert_same(stored["prompt_encoder"], before)
    assert_same(stored["optimizer"]["state"], moments)
    assert stored["scheduler"]["last_epoch"] == 1 and trained.scheduler.last_epoch == 4


def test_a_write_waits_for_the_previous_one_and_files_keep_their_order(tmp_path, monkeypatch):
    written = []
    real_save = checkpoint_writer.save_checkpoint
    monkeypatch.setattr(checkpoint_writer, "save_checkpoint",
                        lambda path, payload: written.append((path.name, payload["epoch"])) or real_save(path, payload))
    trained = Trained()
    with CheckpointWriter(background=True) as writer:
        for epoch in (1, 2):
            payload = {**trained.payload(), "epoch": epoch}
            writer.submit([(tmp_path / "last.pt", payload), (tmp_path / "best.pt", payload)])
    assert written == [("last.pt", 1), ("best.pt", 1), ("last.pt", 2), ("best.pt", 2)]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2


def full_disk(monkeypatch) -> None:
    """Every checkpoint write meets a full disk half-way (the atomic writer turns it into one line)."""
    real_write = odssam.checkpoint.atomic_write

    def write_until_full(path, write, **kwargs):
        def partial(file):
            file.write(b"PK")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real_write(path, partial, **kwargs)

    monkeypatch.setattr(odssam.checkpoint, "atomic_write", write_until_full)


@pytest.mark.parametrize("surfaces_at", ["wait", "submit", "close"])
def test_a_failed_background_write_is_raised_on_the_training_thread(tmp_path, monkeypatch, surfaces_at):
    full_disk(monkeypatch)
    trained = Trained()
    writer = CheckpointWriter(background=True)
    writer.submit([(tmp_path / "last.pt", trained.payload())])  # returns at once: the write fails later
    settle_pending_writes()
    with pytest.raises(OdsSamError, match=r"cannot write .*last\.pt: No space left on device"):
        if surfaces_at == "wait":
            writer.wait()
        elif surfaces_at == "submit":
            writer.submit([(tmp_path / "last.pt", trained.payload())])
        else:
            with writer:
                pass
    writer.close()
    assert not (tmp_path / "last.pt").exists() and not list(tmp_path.glob("*.tmp"))


def test_a_failed_write_is_said_not_raised_over_an_error_already_leaving(tmp_path, monkeypatch, capsys):
    full_disk(monkeypatch)
    with pytest.raises(ZeroDivisionError):
        with CheckpointWriter(background=True) as writer:
            writer.submit([(tmp_path / "last.pt", Trained().payload())])
            raise ZeroDivisionError
    assert "the last checkpoint write failed too: cannot write" in capsys.readouterr().err


def test_settle_waits_for_the_write_in_flight(tmp_path, held_writes):
    with CheckpointWriter(background=True) as writer:
        writer.submit([(tmp_path / "last.pt", Trained().payload())])
        assert not (tmp_path / "last.pt").exists()
        threading.Timer(0.2, held_writes.set).start()
        settle_pending_writes()  # what a divergence message does before it reads last.pt back
        assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
