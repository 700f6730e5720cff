"""A training run's setup, one named step each: run folder, resume point, model, data, embedding cache.

:func:`odssam.engine.trainer.train` calls these in order. What a step builds is handed on
in a small dataclass; :class:`RunContext` holds what every step reads and none changes.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from odssam.checkpoint import load_resumable_checkpoint
from odssam.config import ExperimentConfig, to_dict
from odssam.engine.cache import CacheParams, CacheRecord, EmbeddingCache, build_embedding_cache
from odssam.engine.distributed import DistInfo
from odssam.engine.logging import write_json_atomic
from odssam.engine.data_check import checked_splits
from odssam.engine.targets import loss_resolution, target_size
from odssam.errors import OdsSamError
from odssam.models.base import SegmentationModel
from odssam.models.random_weights import random_sam_text
from odssam.models.registry import build_model
from odssam.models.transforms import PreprocessSpec
from odssam.utils.atomic import atomic_write_text, check_writable_folder, remove_orphan_temp_files
from odssam.utils.large_on_cpu import warn_large_model_on_cpu


@dataclass(frozen=True)
class RunFolder:
    """``<train.output_dir>/<run name>`` and the files the trainer reads back from it."""

    path: Path

    @classmethod
    def of(cls, cfg: ExperimentConfig, run_dir: str | Path | None) -> RunFolder:
        """``run_dir``, or ``<train.output_dir>/<train.run_name or name>`` by default."""
        return cls(Path(run_dir or Path(cfg.train.output_dir) / (cfg.train.run_name or cfg.name)))

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def split_record(self) -> Path:
        return self.path / "splits" / "split.json"


@dataclass(frozen=True)
class RunContext:
    """What every step of a run reads: the experiment, the process, the folder, the switches.

    Attributes:
        cfg: The experiment.
        info: This process in the (possibly trivial) process group.
        folder: The run folder.
        amp_dtype: Autocast dtype (``None``: fp32).
        resume: Whether the run continues from ``last.pt``.
        progress: Show progress bars (rank 0).
    """

    cfg: ExperimentConfig
    info: DistInfo
    folder: RunFolder
    amp_dtype: torch.dtype | None
    resume: bool
    progress: bool

    @property
    def device(self) -> torch.device:
        return self.info.device

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    @property
    def per_rank_batch(self) -> int:
        """``train.batch_size`` is the global batch, split evenly over the processes."""
        return self.cfg.train.batch_size // self.info.world_size

    def say(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.info.is_main:
            print(message)


def allow_tf32(device: torch.device) -> None:
    """TF32 matrix products and convolutions on CUDA (fp32 runs on tensor cores)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def start_or_resume(ctx: RunContext) -> dict[str, Any] | None:
    """``last.pt`` of the run to resume, or ``None`` to start from epoch 0.

    Rank 0 proves the run folder writable first and removes the temporary files of atomic
    writes that a killed run left in it. A run to resume that was killed
    before its first checkpoint (``config.yaml`` but no ``last.pt``) starts from epoch 0,
    as a fresh run would.

    Raises:
        OdsSamError: An unwritable run folder, a fresh start in a folder holding a run, or
            nothing to resume.
    """
    folder = ctx.folder
    if ctx.is_main:  # only rank 0 writes there; a probe of every rank would race with its clean-up
        check_writable_folder(folder.path, "run folder")
        _remove_orphan_temp_files(ctx)
    if ctx.resume:
        if folder.last.exists():
            return load_resumable_checkpoint(folder.last, ctx.cfg.model)
        if folder.config.is_file():
            ctx.say(f"note: {folder.path} holds no last.pt (the run stopped before its first checkpoint): "
                    "starting it from epoch 0")
            return None
        raise OdsSamError(f"{folder.path}: nothing to resume (no last.pt, no config.yaml); start it without --resume")
    if folder.last.exists():
        raise OdsSamError(
            f"{folder.path} already holds a run (last.pt): pass --resume to continue it, "
            "or choose another train.run_name / train.output_dir"
        )
    return None


# A temporary file of the shared embedding cache untouched this long was left by a killed
# process: a live one is written to until it is renamed, a moment later.
STALE_CACHE_TEMP_SECONDS = 600


def _remove_orphan_temp_files(ctx: RunContext) -> None:
    """Delete the temporary files of atomic writes that killed processes left behind.

    In the run folder (only this run writes there) all of them; in the embedding cache,
    which concurrent runs share, those older than :data:`STALE_CACHE_TEMP_SECONDS`.
    """
    folder = ctx.folder
    removed = remove_orphan_temp_files(folder.path) + remove_orphan_temp_files(folder.split_record.parent)
    if ctx.cfg.train.cache_embeddings:
        removed += remove_orphan_temp_files(
            embedding_cache_dir(ctx), recursive=True, older_than_s=STALE_CACHE_TEMP_SECONDS
        )
    if removed:
        ctx.say(f"removed {len(removed)} unfinished temporary file(s) left by interrupted writes")


def embedding_cache_dir(ctx: RunContext) -> Path:
    """``train.cache_dir``, or ``.embedding-cache`` beside the run folder (shared by the runs there)."""
    return Path(ctx.cfg.train.cache_dir) if ctx.cfg.train.cache_dir else ctx.folder.path.parent / ".embedding-cache"


@dataclass(frozen=True)
class TrainingModel:
    """The model being trained.

    Attributes:
        model: The whole model (frozen segmenter included).
        trainable: The module whose weights train and go into checkpoints: ``model.trainable``
            as built, never the ``torch.compile`` wrapper that may replace it in ``model``.
        fingerprint: Identity of the frozen weights (checkpoints, embedding-cache keys).
    """

    model: SegmentationModel
    trainable: nn.Module
    fingerprint: str


def build_training_model(ctx: RunContext, resuming: bool) -> TrainingModel:
    """Seed every generator, build the model on the device and say what it is."""
    cfg, tcfg, device = ctx.cfg, ctx.cfg.train, ctx.device
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed)
    random.seed(tcfg.seed)
    # A resumed run's weights come from last.pt: the feature encoder's starting file is not read.
    model = build_model(cfg.model, feature_encoder_weights=not resuming).to(device)
    warn_large_model_on_cpu(model)
    trainable = model.trainable
    fingerprint = model.frozen_fingerprint()
    model.set_channels_last(device.type == "cuda" if tcfg.channels_last is None else tcfg.channels_last)
    if tcfg.compile:
        _compile_trainable(model, trainable)
    starts_from = "last.pt (resumed)" if resuming else trainable.weights_description
    trainable_millions = sum(p.numel() for p in model.trainable_parameters()) / 1e6
    if model.segmenter is None:  # a baseline without SAM: all of it trains
        ctx.say(f"model {cfg.model.name} at {model.image_size}px, no frozen segmenter")
        ctx.say(f"{cfg.model.name}: {trainable_millions:.3f} M trainable parameters")
        ctx.say(f"{cfg.model.name} starts from: {starts_from}")
        return TrainingModel(model, trainable, fingerprint)
    weights = cfg.model.sam.checkpoint or random_sam_text(cfg.model.sam)
    ctx.say(f"SAM {cfg.model.sam.variant} at {model.image_size}px: {weights}")
    ctx.say(f"prompt encoder: {trainable_millions:.3f} M trainable parameters")
    ctx.say(f"feature encoder starts from: {starts_from}")
    return TrainingModel(model, trainable, fingerprint)


def _compile_trainable(model: nn.Module, trainable: nn.Module) -> None:
    """Replace the trainable submodule of ``model`` by its ``torch.compile`` wrapper."""
    name = next(name for name, child in model.named_children() if child is trainable)
    setattr(model, name, torch.compile(trainable))


@dataclass(frozen=True)
class TrainingData:
    """The training split and, with ``data.val_count > 0``, the held-out validation split."""

    train_set: Any
    val_set: Any | None

    @property
    def validating(self) -> bool:
        return self.val_set is not None


def prepare_data(ctx: RunContext, spec: PreprocessSpec) -> TrainingData:
    """Build and check every split (a resumed run re-reads its split record); write config and split record."""
    dcfg, folder = ctx.cfg.data, ctx.folder
    recorded_split = folder.split_record if ctx.resume and folder.split_record.is_file() else None
    # Test images are only checked here (headers, file ends); they are first decoded by the
    # final evaluation, after training.
    train_set, val_set = checked_splits(ctx.cfg, recorded_split, spec, ctx.say)
    if ctx.is_main:
        folder.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder.config, yaml.safe_dump(to_dict(ctx.cfg), sort_keys=False))
        write_json_atomic(folder.split_record, train_set.split_record())
    if val_set is not None:
        ctx.say(f"data: {dcfg.dataset} train {len(train_set)} images, val {len(val_set)} images (select best.pt)")
    else:
        ctx.say(f"data: {dcfg.dataset} train {len(train_set)} images, no validation (the final model is the last epoch's)")
    return TrainingData(train_set, val_set)


@dataclass(frozen=True)
class LossTargets:
    """Where the loss is computed (``train.loss_resolution``) and the side of square targets (``None``: labels)."""

    resolution: str
    size: int | None


def loss_targets(ctx: RunContext, model: SegmentationModel) -> LossTargets:
    """The loss resolution (the deprecated ``train.full_resolution_loss`` warned about) and target size."""
    tcfg = ctx.cfg.train
    resolution = loss_resolution(tcfg)
    if tcfg.full_resolution_loss:
        warnings.warn(
            "train.full_resolution_loss is deprecated: read as train.loss_resolution: input", FutureWarning, stacklevel=3
        )
    return LossTargets(resolution, target_size(resolution, model.image_size, model.logit_size))


def trains_on_cache(tcfg, model: SegmentationModel) -> bool:
    """Whether training steps read cached embeddings (else images are decoded and encoded every step).

    A model without a frozen segmenter has nothing to cache: its images are decoded every step.
    """
    return tcfg.cache_embeddings and not tcfg.augment and model.segmenter is not None


@dataclass(frozen=True)
class EmbeddingCaches:
    """The embedding cache (``None`` with ``train.cache_embeddings: false``) and the records of each split.

    ``train_records`` is ``None`` when training decodes images; ``val_records`` is ``None``
    without validation or without the cache.
    """

    cache: EmbeddingCache | None = None
    train_records: list[CacheRecord] | None = None
    val_records: list[CacheRecord] | None = None


def prepare_embedding_cache(
    ctx: RunContext, net: TrainingModel, data: TrainingData, targets: LossTargets
) -> EmbeddingCaches:
    """Compute (or find) the frozen segmenter's embeddings of the training and validation images."""
    tcfg, model = ctx.cfg.train, net.model
    if model.segmenter is None:
        if tcfg.cache_embeddings:
            ctx.say("embedding cache: not used (no frozen segmenter: images are decoded every step)")
        return EmbeddingCaches()
    if not tcfg.cache_embeddings:
        return EmbeddingCaches()
    cache_dir = embedding_cache_dir(ctx)
    params = CacheParams(
        net.fingerprint, model.image_size, model.prompt_input_size, targets.size, tcfg.cache_dtype,
        embedding_parts=len(model.segmenter.embedding_shapes()), resize=model.preprocess_spec.resize,
    )
    cache = EmbeddingCache(cache_dir, params)
    report = {"dir": str(cache_dir)}
    records = {}
    splits = {"train": data.train_set if trains_on_cache(tcfg, model) else None, "val": data.val_set}
    for split, dataset in splits.items():
        if dataset is None:
            continue
        records[split], stats = build_embedding_cache(
            model, dataset, cache, ctx.info, description=f"cache {split}", batch_size=tcfg.batch_size,
            num_workers=ctx.cfg.data.num_workers, autocast_dtype=ctx.amp_dtype, progress=ctx.progress,
            cuda_graph=tcfg.cuda_graph,
        )
        report[split] = stats.to_dict()
        ctx.say(f"cache {split}: {stats.embedding_hits} hits, {stats.embedding_misses} computed in {stats.seconds:.1f} s")
    if ctx.is_main:
        write_json_atomic(ctx.folder.path / ("cache.json" if not ctx.resume else "cache-resumed.json"), report)
    return EmbeddingCaches(cache, records.get("train"), records.get("val"))
