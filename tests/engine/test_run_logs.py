"""When the run's logs redraw curves.png: the first and last epochs, else every 10 epochs at most every 30 s."""

from __future__ import annotations

from odssam.engine import logging as run_logging
from odssam.engine.logging import RunLogs


def test_curves_are_redrawn_every_tenth_epoch_at_most_every_30_seconds(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(run_logging, "plot_history", lambda history, path, monitor: drawn.append(len(history)))
    now = [0.0]
    monkeypatch.setattr(run_logging.time, "perf_counter", lambda: now[0])
    logs = RunLogs(tmp_path, "dice@0.5", epoch=0, step=0, active=True)
    for epoch in range(1, 46):
        now[0] += 2.5  # an epoch takes 2.5 s
        record = {"epoch": epoch, "step": epoch, "train_loss": 1.0 / epoch, "lr": 1e-3, "images_per_second": 1.0}
        logs.epoch(record, plot_now=epoch in (1, 45))
    logs.close()
    # After epoch 1 (2.5 s): epoch 10 is 22.5 s later (too soon), 20 is 47.5 s later; 30 is 25 s
    # after 20 (too soon), 40 is 50 s after it; the last epoch is always drawn.
    assert drawn == [1, 20, 40, 45]


def test_other_ranks_draw_nothing(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(run_logging, "plot_history", lambda *args: drawn.append(args))
    RunLogs(tmp_path, "dice@0.5", epoch=0, step=0, active=False).epoch({"epoch": 10}, plot_now=True)
    assert drawn == [] and not (tmp_path / "metrics.jsonl").exists()
