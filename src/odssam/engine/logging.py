"""Run-folder logs: ``metrics.jsonl``, TensorBoard events, the curve plot, summary lines.

TensorBoard and matplotlib are optional at run time: without them the run goes on and
says once what it skipped.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

from odssam.utils.atomic import atomic_write, atomic_write_text


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (anything else as its ``str``), atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


class MetricsLog:
    """``metrics.jsonl``: one JSON record per epoch.

    Args:
        path: The file.
        keep_epochs_up_to: On resume, records of later epochs (written after the checkpoint
            being resumed) are dropped, so the file matches the resumed run.
    """

    def __init__(self, path: str | Path, keep_epochs_up_to: int = 0):
        self.path = Path(path)
        self.records: list[dict] = []
        if keep_epochs_up_to > 0 and self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    if record.get("epoch", 0) <= keep_epochs_up_to:
                        self.records.append(record)
        self._rewrite()

    def _rewrite(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, record: dict) -> None:
        self.records.append(_json_safe(record))
        self._rewrite()


class TensorBoardLog:
    """Scalars to TensorBoard, or nothing when ``tensorboard`` is not installed."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional at run time
            warnings.warn("tensorboard is not installed: no TensorBoard events are written", stacklevel=2)
            return
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step or None)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None and value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def epoch(self, record: dict) -> None:
        step = record["step"]
        self.scalar("train/loss", record["train_loss"], step)
        self.scalar("train/lr", record["lr"], step)
        self.scalar("train/images_per_second", record["images_per_second"], step)
        for key, value in (record.get("val") or {}).items():
            if isinstance(value, (int, float)):
                self.scalar(f"val/{key}", value, step)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_history(history: list[dict], path: str | Path, monitor: str) -> Path | None:
    """Training loss and (with validation) the ``monitor`` metric per epoch, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [r["epoch"] for r in history]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [r["train_loss"] for r in history], marker=".", color="tab:blue")
    loss_axis.set(xlabel="epoch", ylabel="loss (Dice + BCE)", title="training loss")
    validated = [(r["epoch"], r["monitor"]) for r in history if r.get("monitor") is not None]
    if validated:
        metric_axis.plot(*zip(*validated), marker=".", color="tab:orange")
    title = f"validation {monitor}" if validated else "no validation (data.val_count: 0)"
    metric_axis.set(xlabel="epoch", ylabel=monitor, title=title)
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    try:
        return atomic_write(path, lambda file: figure.savefig(file, dpi=110, format="png"))
    finally:
        plt.close(figure)


def format_epoch_summary(record: dict, epochs: int, monitor: str, best: float | None) -> str:
    """One line per epoch: loss, validation metric, learning rate, time, throughput, checkpoint time."""
    parts = [f"epoch {record['epoch']:>3}/{epochs}", f"loss {record['train_loss']:.4f}"]
    if record.get("monitor") is not None:
        flag = " *" if record.get("best") else ""
        parts.append(f"val {monitor} {record['monitor']:.4f} (best {best:.4f}){flag}")
    parts.append(f"lr {record['lr']:.2e}")
    parts.append(f"{record['epoch_seconds']:.1f} s ({record['images_per_second']:.1f} img/s)")
    if record.get("checkpoint_written"):  # the training thread's share: the write itself may go on in the background
        parts.append(f"last.pt {record['checkpoint_seconds']:.1f} s")
    if "peak_gpu_memory_gib" in record:
        parts.append(f"peak {record['peak_gpu_memory_gib']:.1f} GiB")
    return "  ".join(parts)


PLOT_EVERY = 10  # epochs between redraws of curves.png,
PLOT_INTERVAL_S = 30.0  # and at least this many seconds apart (a redraw costs ~0.15 s)


class RunLogs:
    """The run folder's logs, written by rank 0 (other ranks hold an inactive instance).

    ``metrics.jsonl`` and TensorBoard events continue a resumed run: records and events
    after its checkpoint (``epoch``, ``step``) are dropped.

    Args:
        run_dir: The run folder.
        monitor: ``train.monitor`` (plotted with validation).
        epoch, step: Where the run starts (0 for a fresh run).
        active: Whether this process writes (rank 0).
    """

    def __init__(self, run_dir: Path, monitor: str, epoch: int, step: int, active: bool):
        self.run_dir, self.monitor = Path(run_dir), monitor
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", keep_epochs_up_to=epoch) if active else None
        self.tensorboard = TensorBoardLog(self.run_dir / "tensorboard", purge_step=step) if active else None
        self._last_plot = time.perf_counter()

    @property
    def history(self) -> list[dict]:
        """The records of ``metrics.jsonl`` (empty on other ranks)."""
        return self.metrics.records if self.metrics is not None else []

    def step_loss(self, loss: float, step: int) -> None:
        """The loss of the last steps (TensorBoard ``train/loss_step``)."""
        if self.tensorboard is not None:
            self.tensorboard.scalar("train/loss_step", loss, step)

    def epoch(self, record: dict, plot_now: bool = False) -> None:
        """Append an epoch's record; redraw ``curves.png`` with ``plot_now`` (the first and last
        epochs), else every :data:`PLOT_EVERY` epochs at most every :data:`PLOT_INTERVAL_S` seconds."""
        if self.metrics is None:
            return
        self.metrics.append(record)
        self.tensorboard.epoch(record)
        due = record["epoch"] % PLOT_EVERY == 0 and time.perf_counter() - self._last_plot >= PLOT_INTERVAL_S
        if plot_now or due:
            plot_history(self.history, self.run_dir / "curves.png", self.monitor)
            self._last_plot = time.perf_counter()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
