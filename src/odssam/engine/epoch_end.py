"""After each epoch: validation on the held-out images, its checkpoints, the epoch's record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from odssam.checkpoint import checkpoint_payload
from odssam.engine.checkpoint_writer import CheckpointWriter
from odssam.engine.epoch import EpochStats, RunState, TrainingDiverged, diverged_message
from odssam.engine.evaluate import evaluate_cached, evaluate_dataset
from odssam.engine.run_setup import EmbeddingCaches, RunContext, TrainingData
from odssam.engine.training_parts import TrainingParts
from odssam.inference.batch import NonFiniteOutput
from odssam.metrics.result import MetricResult


def validation_due(ctx: RunContext, data: TrainingData, epoch: int, last_epoch: bool) -> bool:
    """Rank 0 validates every ``train.eval_every`` epochs and after the last (only with ``data.val_count > 0``)."""
    return ctx.is_main and data.validating and (epoch % ctx.cfg.train.eval_every == 0 or last_epoch)


def validate(ctx: RunContext, model: torch.nn.Module, data: TrainingData, caches: EmbeddingCaches) -> MetricResult:
    """Score ``model`` on the validation images: from the embedding cache when there is one.

    Raises:
        TrainingDiverged: The model's outputs are NaN or infinite (weights grown too large).
    """
    tcfg, num_workers = ctx.cfg.train, ctx.cfg.data.num_workers
    eval_args = dict(name="val", metrics=tcfg.metrics, batch_size=ctx.per_rank_batch, amp_dtype=ctx.amp_dtype)
    try:
        if caches.val_records is not None:
            return evaluate_cached(model, caches.cache, caches.val_records, num_workers=num_workers, **eval_args)
        validation, _ = evaluate_dataset(model, data.val_set, num_workers=num_workers, **eval_args)
    except NonFiniteOutput as error:
        what = "the model's outputs on the validation images became NaN or infinite"
        raise TrainingDiverged(diverged_message(what, ctx.folder)) from error
    return validation


def monitored_value(validation: MetricResult | None, monitor: str) -> float | None:
    """The ``train.monitor`` value of a validation (``None`` without one)."""
    return validation.values.get(monitor) if validation is not None else None


@dataclass(frozen=True)
class EpochTiming:
    """Where an epoch's wall time went on the training thread.

    Attributes:
        steps: The training steps (:attr:`EpochStats.seconds`).
        validation: Validation (0 without).
        checkpoint: Snapshotting checkpoints and waiting for a previous write (about 0 without
            a write); after the final epoch also waiting for its own write.
        checkpoint_written: Whether ``last.pt`` was written (handed to the writer) after the epoch.
        total: All of the epoch, from its first step to its checkpoints.
    """

    steps: float
    validation: float
    checkpoint: float
    checkpoint_written: bool
    total: float


def epoch_record(
    ctx: RunContext,
    parts: TrainingParts,
    state: RunState,
    epoch: int,
    stats: EpochStats,
    validation: MetricResult | None,
    improved: bool,
    timing: EpochTiming | None = None,
) -> dict[str, Any]:
    """The epoch's line of ``metrics.jsonl`` (also printed and sent to TensorBoard).

    ``timing``: where the epoch's time went (``None``: on its steps only, nothing written).
    """
    if timing is None:
        timing = EpochTiming(stats.seconds, 0.0, 0.0, checkpoint_written=False, total=stats.seconds)
    record = {
        "epoch": epoch,
        "step": state.step,
        "train_loss": stats.train_loss,
        "lr": parts.optimizer.param_groups[0]["lr"],
        # What the epoch cost in total (``odssam compare`` sums it per device), then its parts.
        "epoch_seconds": timing.total,
        "step_seconds": timing.steps,
        "validation_seconds": timing.validation,
        "checkpoint_seconds": timing.checkpoint,
        "checkpoint_written": timing.checkpoint_written,
        "images_per_second": stats.images_per_second,
        **stats.model_values,
        "val": validation.values if validation is not None else None,
        "monitor": monitored_value(validation, ctx.cfg.train.monitor),
        "best": improved,
        "device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else ctx.device.type,
        "world_size": ctx.info.world_size,
    }
    if ctx.device.type == "cuda":
        record["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
    return record


@dataclass
class EpochCheckpoints:
    """Where an epoch's checkpoints go (rank 0), and when ``last.pt`` is due.

    Attributes:
        writer: Writes them (in a background thread with ``train.checkpoint_async``).
        interval_s: ``train.checkpoint_interval_s``: ``last.pt`` is due once this many seconds
            passed since its previous write started (0: after every epoch).
        clock: Seconds, monotonic (a test's stand-in).
        last_started: When the previous ``last.pt`` write started (at first: when this was made,
            before the first epoch).
    """

    writer: CheckpointWriter
    interval_s: float
    clock: Callable[[], float] = time.monotonic
    last_started: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_started = self.clock()

    def last_due(self, final: bool) -> bool:
        """Whether ``last.pt`` is written now: after the ``final`` epoch, or once the interval passed."""
        return final or self.interval_s == 0 or self.clock() - self.last_started >= self.interval_s


def save_epoch_checkpoints(
    ctx: RunContext, parts: TrainingParts, state: RunState, improved: bool, checkpoints: EpochCheckpoints, final: bool
) -> tuple[float, bool]:
    """``last.pt`` (resumable) when due, ``best.pt`` (weights only) when validation improved.

    ``final``: the run's last epoch (also by ``train.max_steps``) or an interrupted run's:
    ``last.pt`` is written whatever the interval, and on disk when this returns.
    Otherwise the training thread only snapshots the state (after waiting for the previous
    write, so at most one is pending) and the writer writes it while training goes on.

    Returns:
        ``(seconds, written)``: the training thread's time spent here, and whether
        ``last.pt`` was written.
    """
    start = time.perf_counter()
    write_last = checkpoints.last_due(final)
    if write_last or improved:
        checkpoints.writer.wait()  # the previous write first: in memory, the live state and one snapshot at most
        fields = dict(epoch=state.epoch, step=state.step, best_metric=state.best_metric)
        writes = []
        if write_last:
            checkpoints.last_started = checkpoints.clock()
            resumable = dict(optimizer=parts.optimizer, scheduler=parts.scheduler)
            last = checkpoint_payload(ctx.cfg, parts.trainable, parts.fingerprint, **fields, **resumable)
            writes.append((ctx.folder.last, last))
        if improved:
            writes.append((ctx.folder.best, checkpoint_payload(ctx.cfg, parts.trainable, parts.fingerprint, **fields)))
        checkpoints.writer.submit(writes)
    if final:
        checkpoints.writer.wait()
    return time.perf_counter() - start, write_last
