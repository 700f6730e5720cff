"""One training epoch: the step loop, its loss windows (NaN check, TensorBoard, progress bar), its summary.

:class:`RunState` holds the run's counters, which the loop advances explicitly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from odssam.checkpoint import load_checkpoint
from odssam.engine.checkpoint_writer import settle_pending_writes
from odssam.engine.distributed import all_reduce_sum, broadcast_buffers
from odssam.engine.logging import RunLogs
from odssam.utils.progress import progress_bar
from odssam.errors import OdsSamError

if TYPE_CHECKING:
    from odssam.engine.run_setup import RunContext, RunFolder
    from odssam.engine.training_parts import TrainingParts

LOG_INTERVAL = 10  # steps between loss syncs (progress bar, TensorBoard, NaN check)


class TrainingDiverged(OdsSamError):
    """The loss became NaN or infinite; the run folder keeps the last good checkpoint."""


@dataclass
class RunState:
    """The run's counters: what ``last.pt`` stores and a resumed run starts from.

    Attributes:
        epoch: Epochs completed.
        step: Optimizer steps taken.
        best_metric: Best validation value of ``train.monitor`` so far (``None``: none yet).
    """

    epoch: int = 0
    step: int = 0
    best_metric: float | None = None

    def reached(self, max_steps: int | None) -> bool:
        """Whether ``train.max_steps`` (``None``: no limit) steps have been taken."""
        return max_steps is not None and self.step >= max_steps

    def update_best(self, monitored: float | None, higher_is_better: bool) -> bool:
        """Keep ``monitored`` as the best metric if it is finite and better; whether it was."""
        improved = monitored is not None and math.isfinite(monitored) and (
            self.best_metric is None
            or (monitored > self.best_metric if higher_is_better else monitored < self.best_metric)
        )
        if improved:
            self.best_metric = monitored
        return improved


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of steps measured.

    Attributes:
        train_loss: Mean loss over the epoch's steps and processes.
        seconds: Wall time of the epoch's steps.
        images_per_second: Training images per second, all processes together.
        model_values: What the model's ``start_epoch`` hook returned (e.g. the ODConv temperature).
    """

    train_loss: float
    seconds: float
    images_per_second: float
    model_values: dict[str, float]


def train_one_epoch(ctx: RunContext, parts: TrainingParts, state: RunState, epoch: int, logs: RunLogs) -> EpochStats:
    """Train 1-based ``epoch``: every batch of the loader, or until ``train.max_steps``.

    Advances ``state.step``. Every :data:`LOG_INTERVAL` steps (and at the end) the loss is
    summed over the processes, checked, and logged. At the end the weights are checked too:
    the last update can make them NaN after a finite loss, and then validation, the
    checkpoint and the final evaluation would all see them.

    Raises:
        TrainingDiverged: The loss or a weight became NaN or infinite.
    """
    tcfg, info, device = ctx.cfg.train, ctx.info, ctx.device
    model_values = parts.model.start_epoch(epoch - 1, tcfg)
    parts.set_epoch(epoch)
    parts.model.train()
    epoch_start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    window_sum = torch.zeros((), dtype=torch.float64, device=device)
    window_steps = batches = images = 0
    loader = bar = parts.loader
    if ctx.progress and ctx.is_main:
        bar = progress_bar(loader, desc=f"epoch {epoch}/{tcfg.epochs}", total=len(loader))
    for batch in bar:
        loss = parts.step(batch)
        if parts.scheduler is not None:
            parts.scheduler.step()
        state.step += 1
        batches += 1
        images += batch["target"].shape[0]
        loss_sum += loss.detach()
        window_sum += loss.detach()
        window_steps += 1
        if window_steps == LOG_INTERVAL or batches == len(loader) or state.reached(tcfg.max_steps):
            # One sync per interval: cheap, and every rank reaches the same NaN verdict.
            window_loss = float(all_reduce_sum(window_sum, info).item()) / (window_steps * info.world_size)
            if not math.isfinite(window_loss):
                what = f"the loss became {window_loss} in epoch {epoch} (by step {state.step})"
                raise TrainingDiverged(diverged_message(what, ctx.folder))
            logs.step_loss(window_loss, state.step)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{window_loss:.4f}", lr=f"{parts.optimizer.param_groups[0]['lr']:.2e}")
            window_sum.zero_()
            window_steps = 0
        if state.reached(tcfg.max_steps):
            break
    broadcast_buffers(parts.trainable, info)  # per-process BatchNorm statistics -> rank 0's
    # After the broadcast, so every rank checks the same weights and reaches the same verdict.
    bad_weight = first_non_finite(parts.trainable)
    if bad_weight is not None:
        what = f"weight '{bad_weight}' became NaN or infinite in epoch {epoch} (by step {state.step})"
        raise TrainingDiverged(diverged_message(what, ctx.folder))
    train_loss = float(all_reduce_sum(loss_sum, info).item()) / (max(batches, 1) * info.world_size)
    seconds = time.perf_counter() - epoch_start
    return EpochStats(train_loss, seconds, images * info.world_size / max(seconds, 1e-9), model_values)


def first_non_finite(module: torch.nn.Module) -> str | None:
    """Name of the first floating-point parameter or buffer of ``module`` holding NaN or inf.

    One device sync for all tensors (their verdicts are stacked on the device first).
    """
    named = [(name, tensor) for name, tensor in module.state_dict().items() if tensor.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in named]).tolist()
    return next((name for (name, _), ok in zip(named, finite) if not ok), None)


def diverged_message(what: str, folder: RunFolder) -> str:
    """``what`` went wrong (e.g. "the loss became nan in epoch 2 (by step 6)") and which checkpoint is left."""
    settle_pending_writes()  # last.pt may be being written in the background: read the finished file
    if folder.last.exists():
        try:
            kept = f"the last good checkpoint is {folder.last} (epoch {load_checkpoint(folder.last)['epoch']})"
        except OdsSamError as error:
            kept = f"no usable checkpoint is left ({error})"
    else:
        kept = f"no checkpoint was written yet in {folder.path}"
    return (
        f"training stopped: {what}; {kept}. "
        "Lower train.lr, or check the data for empty or corrupt masks"
    )
