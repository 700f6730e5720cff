"""After each epoch: validation on the held-out images, the epoch's record, its checkpoints."""

from __future__ import annotations

from typing import Any

import torch

from odssam.checkpoint import checkpoint_payload, save_checkpoint
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


def epoch_record(
    ctx: RunContext,
    parts: TrainingParts,
    state: RunState,
    epoch: int,
    stats: EpochStats,
    validation: MetricResult | None,
    improved: bool,
) -> dict[str, Any]:
    """The epoch's line of ``metrics.jsonl`` (also printed and sent to TensorBoard)."""
    record = {
        "epoch": epoch,
        "step": state.step,
        "train_loss": stats.train_loss,
        "lr": parts.optimizer.param_groups[0]["lr"],
        "epoch_seconds": stats.seconds,
        "images_per_second": stats.images_per_second,
        **stats.model_values,
        "val": validation.values if validation is not None else None,
        "monitor": monitored_value(validation, ctx.cfg.train.monitor),
        "best": improved,
        # What the epoch's wall time was spent on (``odssam compare`` sums it per device).
        "device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else ctx.device.type,
        "world_size": ctx.info.world_size,
    }
    if ctx.device.type == "cuda":
        record["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
    return record


def save_epoch_checkpoints(ctx: RunContext, parts: TrainingParts, state: RunState, improved: bool) -> None:
    """``last.pt`` (resumable) after every epoch; ``best.pt`` (weights only) when validation improved."""
    fields = dict(epoch=state.epoch, step=state.step, best_metric=state.best_metric)
    last = checkpoint_payload(
        ctx.cfg, parts.trainable, parts.fingerprint, **fields, optimizer=parts.optimizer, scheduler=parts.scheduler
    )
    save_checkpoint(ctx.folder.last, last)
    if improved:
        save_checkpoint(ctx.folder.best, checkpoint_payload(ctx.cfg, parts.trainable, parts.fingerprint, **fields))
