"""What the epoch loop drives: training items, loader, optimizer, schedule, loss and step.

:func:`build_training_parts` builds them from the run's setup; :func:`resume_training`
puts a resumed run's state back into them; :func:`attach_step` builds the step last
(after the resume, which can rule out the CUDA graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from odssam.checkpoint import restore_training_state
from odssam.engine.augment import DecodedTrainingSet
from odssam.engine.cache import CachedTrainingSet
from odssam.engine.device_items import DeviceBatches, DeviceItems, resident_reason
from odssam.engine.epoch import RunState
from odssam.engine.graphed_step import graph_unsupported_reason
from odssam.engine.run_setup import EmbeddingCaches, LossTargets, RunContext, TrainingData, TrainingModel, trains_on_cache
from odssam.engine.step import BatchStep, build_batch_step
from odssam.engine.targets import TrainingLoss, collate_training_items
from odssam.models.base import SegmentationModel
from odssam.models.loss import DiceBCELoss


@dataclass
class TrainingParts:
    """Everything one epoch of training touches.

    Attributes:
        model: The model (frozen segmenter included).
        trainable: The module whose weights train and go into checkpoints.
        fingerprint: Identity of the frozen weights (stored in checkpoints).
        items: The training items: :class:`CachedTrainingSet` or :class:`DecodedTrainingSet`.
        sampler: Splits (and shuffles) the items over the processes, per epoch.
        loader: Batches of this process: a DataLoader, or :class:`DeviceBatches` of items
            held on the device (``train.cache_on_device``).
        optimizer: Adam over the model's parameter groups.
        scheduler: The learning-rate schedule (``None``: constant).
        loss: The training loss at ``train.loss_resolution``.
        cached: Steps read cached embeddings.
        graphed: The step will be a CUDA graph; ``eager_reason`` says why not otherwise.
        step: The training step (set by :func:`attach_step`).
    """

    model: SegmentationModel
    trainable: nn.Module
    fingerprint: str
    items: Dataset
    sampler: DistributedSampler
    loader: DataLoader | DeviceBatches
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    loss: TrainingLoss
    cached: bool
    graphed: bool
    eager_reason: str | None
    step: BatchStep | None = None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the sampler and reseed augmentation for 1-based ``epoch``."""
        self.sampler.set_epoch(epoch)
        if isinstance(self.items, DecodedTrainingSet):
            self.items.set_epoch(epoch)


def build_training_parts(
    ctx: RunContext, net: TrainingModel, data: TrainingData, caches: EmbeddingCaches, targets: LossTargets
) -> TrainingParts:
    """Items, sampler, loader, optimizer, schedule and loss of a run, and whether its step can be a graph."""
    tcfg, dcfg, info, device = ctx.cfg.train, ctx.cfg.data, ctx.info, ctx.device
    model = net.model
    cached = trains_on_cache(tcfg, model)
    if cached:
        items = CachedTrainingSet(caches.cache, caches.train_records)
    else:
        items = DecodedTrainingSet(
            data.train_set, model.preprocess_spec, targets.size, tcfg.augment, tcfg.color_jitter, tcfg.seed
        )
    sampler = DistributedSampler(items, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=tcfg.seed)
    eager_reason = graph_unsupported_reason(
        ctx.cfg, device, info.world_size, cached, model.graph_unsupported_reason(tcfg, device)
    )
    graphed = tcfg.cuda_graph and eager_reason is None
    # Under DDP every step replays the graph (all-reduce included), so a last partial batch,
    # which would need an eager step, is left out of the epoch.
    drop_partial_batch = graphed and info.is_distributed and len(sampler) >= ctx.per_rank_batch
    loader = _device_batches(ctx, items, sampler, drop_partial_batch) if cached else None
    if loader is None:
        loader = DataLoader(
            items,
            batch_size=ctx.per_rank_batch,
            sampler=sampler,
            num_workers=dcfg.num_workers,
            pin_memory=device.type == "cuda",
            drop_last=drop_partial_batch,
            collate_fn=collate_training_items,
            # Cached items have no per-epoch state, so workers can live across epochs.
            persistent_workers=cached and dcfg.num_workers > 0,
            # Worker seeds come from here, not from the global RNG, whose stream must not depend
            # on how often a loader was (re)started: a resumed run replays it from the checkpoint.
            generator=torch.Generator().manual_seed(tcfg.seed),
        )
    optimizer, scheduler = _optimizer_and_schedule(model, ctx, steps_per_epoch=len(loader))
    loss = TrainingLoss(DiceBCELoss(tcfg.dice_weight, tcfg.bce_weight), targets.resolution, model.image_size)
    return TrainingParts(
        model, net.trainable, net.fingerprint, items, sampler, loader, optimizer, scheduler, loss,
        cached=cached, graphed=graphed, eager_reason=eager_reason,
    )


def _device_batches(ctx: RunContext, items: Dataset, sampler, drop_last: bool) -> DeviceBatches | None:
    """The cached items held on the device, batched in the sampler's order; ``None``: the DataLoader reads them."""
    setting, device = ctx.cfg.train.cache_on_device, ctx.device
    reason = resident_reason(setting, device, items)
    loaded = DeviceItems.load(items, device, ctx.cfg.data.num_workers) if reason is None else reason
    if isinstance(loaded, str):
        if setting is not None or device.type == "cuda":
            ctx.say(f"training items: read by the loader every epoch ({loaded})")
        return None
    ctx.say(f"training items: {len(loaded)} on {device.type} ({loaded.nbytes / 2**20:.0f} MiB, "
            f"loaded in {loaded.seconds:.1f} s)")
    return DeviceBatches(loaded, sampler, ctx.per_rank_batch, drop_last)


def _optimizer_and_schedule(model: SegmentationModel, ctx: RunContext, steps_per_epoch: int) -> tuple[Any, Any]:
    """Adam over the model's parameter groups and, with ``train.lr_schedule: cosine``, its schedule."""
    tcfg = ctx.cfg.train
    # On CUDA: one fused kernel for the whole update (the multi-tensor path falls back to a
    # kernel per tensor with channels-last weights), capturable so a CUDA graph can hold it.
    cuda_options = dict(fused=True, capturable=True) if ctx.device.type == "cuda" else {}
    optimizer = torch.optim.Adam(model.parameter_groups(tcfg.weight_decay), lr=tcfg.lr, **cuda_options)
    total_steps = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)
    scheduler = None
    if tcfg.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return optimizer, scheduler


def resume_training(ctx: RunContext, resumed: dict[str, Any], parts: TrainingParts) -> RunState:
    """Load ``last.pt``'s weights, optimizer, schedule and RNG states into ``parts``; its counters."""
    epoch, step, best_metric = restore_training_state(resumed, parts.trainable, parts.optimizer, parts.scheduler)
    ctx.say(f"resuming {ctx.folder.path} after epoch {epoch} (step {step})")
    if parts.graphed and not all(group.get("capturable") for group in parts.optimizer.param_groups):
        parts.graphed, parts.eager_reason = False, "the resumed optimizer state is not capturable"
    return RunState(epoch=epoch, step=step, best_metric=best_metric)


def attach_step(ctx: RunContext, parts: TrainingParts) -> None:
    """Build the training step (eager or CUDA graph, DDP under ``torchrun``) and say which it is."""
    if ctx.cfg.train.cuda_graph and ctx.device.type == "cuda":
        ctx.say("training step: CUDA graph" if parts.graphed else f"training step: eager ({parts.eager_reason})")
    parts.step = build_batch_step(
        parts.model, parts.optimizer, parts.loss, ctx.info, ctx.amp_dtype,
        cached=parts.cached, graphed=parts.graphed, say=ctx.say,
    )
