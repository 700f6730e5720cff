"""SIGINT/SIGTERM during training: finish the epoch, save last.pt, exit 130/143; a second signal stops at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import odssam.engine.trainer as trainer
from odssam.checkpoint import load_checkpoint
from odssam.cli.main import main
from odssam.engine.distributed import DistInfo
from odssam.engine.interruption import StopRequest, TrainingInterrupted
from odssam.engine.trainer import train

from helpers import REPO_ROOT, TINY_CONFIG, free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ONE_PROCESS = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture
def handlers_kept():
    """The test's own signal handlers, checked to be back afterwards."""
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield before
    after = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number, handler in before.items():
        signal.signal(number, handler)
    assert after == before


def test_the_first_signal_sets_the_flag_and_the_second_stops_at_once(handlers_kept, capfd):
    stop = StopRequest()
    stop.install()
    assert stop.agreed(ONE_PROCESS) is None
    signal.raise_signal(signal.SIGINT)  # would raise KeyboardInterrupt without the handler
    assert stop.agreed(ONE_PROCESS) == signal.SIGINT
    assert "SIGINT: stopping after this epoch and saving last.pt (again to stop now)" in capfd.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is handlers_kept[signal.SIGINT]  # the second one restored them
    stop.restore()


def test_sigterm_wins_over_sigint_and_gives_exit_code_143(handlers_kept):
    stop = StopRequest()
    stop.install()
    signal.raise_signal(signal.SIGTERM)  # would end the process without the handler
    assert stop.agreed(ONE_PROCESS) == signal.SIGTERM
    stop.restore()
    assert TrainingInterrupted(signal.SIGTERM, 3, REPO_ROOT).exit_code == 143
    assert TrainingInterrupted(signal.SIGINT, 3, REPO_ROOT).exit_code == 130


def test_handlers_are_installed_from_the_main_thread_only(handlers_kept):
    stop = StopRequest()
    worker = threading.Thread(target=stop.install)  # signal.signal would raise ValueError here
    worker.start()
    worker.join()
    assert signal.getsignal(signal.SIGINT) is handlers_kept[signal.SIGINT]
    stop.restore()


def test_a_signal_after_the_last_epoch_end_goes_to_the_previous_handler(handlers_kept):
    stop = StopRequest()
    stop.install()
    signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        stop.restore(deliver_late_signal=True)
    assert signal.getsignal(signal.SIGINT) is handlers_kept[signal.SIGINT]


def test_sigterm_in_an_epoch_ends_the_run_after_it_with_last_pt_and_exit_143(tiny_config, monkeypatch, capsys,
                                                                            handlers_kept):
    real_epoch = trainer.train_one_epoch

    def terminated_in_epoch_2(ctx, parts, state, epoch, logs):
        stats = real_epoch(ctx, parts, state, epoch, logs)
        if epoch == 2:
            signal.raise_signal(signal.SIGTERM)
        return stats

    monkeypatch.setattr(trainer, "train_one_epoch", terminated_in_epoch_2)
    run = tiny_config.train.output_dir + "/tiny"
    tcfg = tiny_config.train
    settings = [f"data.root={tiny_config.data.root}", f"train.output_dir={tcfg.output_dir}",
                f"train.cache_dir={tcfg.cache_dir}", "train.epochs=5", "train.checkpoint_interval_s=3600"]
    args = ["train", "--config", str(TINY_CONFIG), "--no-progress", *[a for item in settings for a in ("--set", item)]]
    assert main(args) == 143
    err = capsys.readouterr().err
    assert f"odssam train: interrupted: stopped after epoch 2; last.pt saved; continue with --resume {run}" in err
    assert load_checkpoint(f"{run}/last.pt")["epoch"] == 2
    records = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    assert [r["checkpoint_written"] for r in records] == [False, True]


def test_the_train_api_raises_a_keyboard_interrupt(tiny_config, monkeypatch, handlers_kept):
    real_epoch = trainer.train_one_epoch

    def interrupted(ctx, parts, state, epoch, logs):
        signal.raise_signal(signal.SIGINT)
        return real_epoch(ctx, parts, state, epoch, logs)

    monkeypatch.setattr(trainer, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(tiny_config, progress=False)
    assert isinstance(stopped.value, TrainingInterrupted) and stopped.value.epoch == 1
    assert load_checkpoint(stopped.value.run_dir / "last.pt")["epoch"] == 1


def _child_env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def test_ctrl_c_to_odssam_train_saves_last_pt_exits_130_and_resumes(folder_dataset, tmp_path):
    run = tmp_path / "run"
    settings = [f"data.root={folder_dataset}", f"train.cache_dir={tmp_path / 'cache'}", "train.final_eval=false",
                "train.checkpoint_interval_s=3600"]
    sets = [arg for item in settings for arg in ("--set", item)]
    command = [sys.executable, "-m", "odssam", "train", "--device", "cpu", "--no-progress", *sets]
    start = [*command, "--config", str(TINY_CONFIG), "--run-dir", str(run), "--set", "train.epochs=100"]
    child = subprocess.Popen(start, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)  # after the first epoch, during a later one
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err[-2000:]
    epochs = len(metrics.read_text().splitlines())
    assert 1 <= epochs < 100
    assert f"interrupted: stopped after epoch {epochs}; last.pt saved; continue with --resume {run}" in err
    assert load_checkpoint(run / "last.pt")["epoch"] == epochs

    resumed = subprocess.run([*command, "--resume", str(run), "--set", f"train.epochs={epochs + 1}"],
                             env=_child_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {run} after epoch {epochs}" in resumed.stdout
    assert load_checkpoint(run / "last.pt")["epoch"] == epochs + 1


def agree_on_rank(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """One of two gloo processes: which stop each sees, when none, one, or both got a signal."""
    address = f"tcp://127.0.0.1:{port}"
    torch.distributed.init_process_group("gloo", init_method=address, rank=rank, world_size=world_size)
    info = DistInfo(rank=rank, local_rank=rank, world_size=world_size, device=torch.device("cpu"))
    stop = StopRequest()
    seen = [stop.agreed(info)]
    stop.signal_number = signal.SIGINT if rank == 1 else None  # as the handler sets it
    seen.append(stop.agreed(info))
    stop.signal_number = signal.SIGTERM if rank == 0 else signal.SIGINT
    seen.append(stop.agreed(info))
    torch.distributed.destroy_process_group()
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(seen))


def test_processes_agree_on_the_stop_after_each_epoch(tmp_path):
    torch.multiprocessing.start_processes(agree_on_rank, args=(2, free_port(), str(tmp_path)), nprocs=2,
                                          start_method="spawn")
    seen = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert seen[0] == seen[1] == [None, signal.SIGINT, signal.SIGTERM]


def test_an_ignored_signal_stays_ignored(handlers_kept):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        stop = StopRequest()
        stop.install()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == stop._on_signal
        stop.restore()
    finally:
        signal.signal(signal.SIGTERM, handlers_kept[signal.SIGTERM])
