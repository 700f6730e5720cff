"""The training loop, top to bottom: ``odssam train`` in one function.

:func:`_train` reads as the run goes: setup (:mod:`~odssam.engine.run_setup`), the parts
the loop drives (:mod:`~odssam.engine.training_parts`), the epochs (:func:`_epochs`: one
epoch's steps in :mod:`~odssam.engine.epoch`, validation and checkpoints in
:mod:`~odssam.engine.epoch_end`), and the final model (:mod:`~odssam.engine.final_eval`).
Model-specific decisions belong to the model (:class:`~odssam.models.base.SegmentationModel`),
not to the loop.

Checkpoints stay off the critical path: ``last.pt`` is written every
``train.checkpoint_interval_s`` seconds and after the last epoch, by a background thread
(:mod:`~odssam.engine.checkpoint_writer`) that writes a CPU snapshot taken at the epoch's
end. The first SIGINT or SIGTERM ends the run after the current epoch with ``last.pt``
written (:mod:`~odssam.engine.interruption`).

Only the prompt encoder learns; SAM is frozen. Two input paths:

* cached (default): SAM's image embedding, the prompt encoder's input and the target of
  every image are computed once (:mod:`odssam.engine.cache`) and a step runs only the
  prompt encoder and the mask decoder;
* decoded (``train.augment`` or ``train.cache_embeddings: false``): images are decoded,
  augmented and encoded by SAM on every step, as AutoSAM-style training does.

Which model is the result (the paper trains on the whole training set and says nothing
of checkpoint selection):

* ``data.val_count: 0`` (default, the paper's protocol): every training image is trained
  on, nothing is validated during training, and the final model is the last epoch's
  (``last.pt``). No test image is decoded before the final evaluation (the check of
  every split before the first step reads headers and file ends only).
* ``data.val_count: N > 0`` (opt-in): N training images are held out, validated every
  ``train.eval_every`` epochs (and after the last), and ``best.pt`` keeps the epoch with
  the best ``train.monitor`` on them; the final model is ``best.pt``.

One process or several under ``torchrun`` (DistributedDataParallel; ``train.batch_size``
is the global batch, split evenly over the processes). Rank 0 writes the run folder::

    <output_dir>/<run_name>/
        config.yaml          resolved experiment config
        splits/<split>.json  the samples of every split used
        cache.json           embedding-cache statistics (hits, misses, build time)
        last.pt              the last epoch, with the optimizer state (resumable)
        best.pt              with validation only: the epoch of the best validation score
        metrics.jsonl        one line per epoch
        tensorboard/         TensorBoard events
        curves.png           loss (and validation metric) per epoch
        report.{json,csv,md} final evaluation of the final model on the test split(s)
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from odssam.config import ExperimentConfig
from odssam.engine.distributed import DistInfo, barrier, cleanup_distributed, init_distributed
from odssam.engine.epoch import RunState, TrainingDiverged, train_one_epoch
from odssam.engine.checkpoint_writer import CheckpointWriter
from odssam.engine.epoch_end import (
    EpochCheckpoints,
    EpochTiming,
    epoch_record,
    monitored_value,
    save_epoch_checkpoints,
    validate,
    validation_due,
)
from odssam.engine.interruption import StopRequest, TrainingInterrupted
from odssam.engine.final_eval import evaluate_final_model, load_final_model
from odssam.engine.logging import RunLogs, format_epoch_summary
from odssam.utils.device import resolve_precision as autocast_dtype
from odssam.engine.run_setup import (
    RunContext,
    RunFolder,
    allow_tf32,
    build_training_model,
    loss_targets,
    prepare_data,
    prepare_embedding_cache,
    start_or_resume,
)
from odssam.engine.setup import check_train_config, monitor_direction
from odssam.engine.training_parts import attach_step, build_training_parts, resume_training
from odssam.metrics.result import MetricResult

__all__ = ["TrainResult", "TrainingDiverged", "TrainingInterrupted", "train"]

@dataclass
class TrainResult:
    """What :func:`train` leaves behind.

    Attributes:
        run_dir: The run folder.
        epochs: Epochs completed (resumed ones included).
        steps: Optimizer steps taken in total.
        best_metric: Best validation value of ``train.monitor`` (``None`` without validation).
        history: The records of ``metrics.jsonl``.
        test_results: Final evaluation of the final model per test set (empty without
            ``train.final_eval``).
        test_skipped: Test samples the final evaluation could not read (one line each).
        model: The trained :class:`~odssam.models.ods_sam.OdsSam`, in eval mode, holding
            the final model's weights (those of ``checkpoint``).
        checkpoint: The final model's checkpoint: ``last.pt`` (the last epoch) by default,
            ``best.pt`` when ``data.val_count > 0`` selected an epoch on validation images.
    """

    run_dir: Path
    epochs: int
    steps: int
    best_metric: float | None
    history: list[dict] = field(default_factory=list)
    test_results: list[MetricResult] = field(default_factory=list)
    test_skipped: list[str] = field(default_factory=list)
    model: torch.nn.Module | None = None
    checkpoint: Path | None = None


def train(
    cfg: ExperimentConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    device: str | None = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train the prompt encoder of ``cfg`` and write a run folder.

    Args:
        cfg: The experiment (model, data, train sections).
        run_dir: Run folder (default ``<train.output_dir>/<train.run_name or name>``).
        resume: Continue the run in ``run_dir`` from its ``last.pt``: same weights, optimizer
            and scheduler state, RNG state and epoch counter, so the loss curve continues
            as if never interrupted. ``train.epochs`` may be raised to train longer.
        device: ``auto``, ``cpu``, ``cuda`` (under ``torchrun``: each process its GPU).
        progress: Show progress bars (rank 0).

    Returns:
        A :class:`TrainResult`.

    Raises:
        OdsSamError: Bad config or data, a run folder in the way, a checkpoint that could
            not be written, or a diverged loss (:class:`TrainingDiverged`).
        TrainingInterrupted: A SIGINT or SIGTERM stopped the run after an epoch, with
            ``last.pt`` written (a :class:`KeyboardInterrupt`).
    """
    owns_process_group = not torch.distributed.is_initialized()
    info = init_distributed(device)
    try:
        return _train(cfg, info, run_dir=run_dir, resume=resume, progress=progress)
    finally:
        if owns_process_group:
            cleanup_distributed()


def _train(cfg: ExperimentConfig, info: DistInfo, *, run_dir, resume: bool, progress: bool) -> TrainResult:
    tcfg = cfg.train
    check_train_config(cfg, info.world_size)
    allow_tf32(info.device)
    folder = RunFolder.of(cfg, run_dir)
    ctx = RunContext(cfg, info, folder, autocast_dtype(tcfg.precision, info.device), resume, progress)

    # setup: resume point, model, data, embedding cache
    resumed = start_or_resume(ctx)
    net = build_training_model(ctx, resuming=resumed is not None)
    data = prepare_data(ctx, net.model.preprocess_spec)
    targets = loss_targets(ctx, net.model)
    caches = prepare_embedding_cache(ctx, net, data, targets)

    # what the loop drives: loader, optimizer, schedule, loss; a resumed run's state; the step
    parts = build_training_parts(ctx, net, data, caches, targets)
    state = resume_training(ctx, resumed, parts) if resumed is not None else RunState()
    attach_step(ctx, parts)
    logs = RunLogs(folder.path, tcfg.monitor, state.epoch, state.step, active=info.is_main)

    # epochs: train, validate (opt-in), checkpoint, log; a first SIGINT/SIGTERM ends the run after its epoch
    writer = CheckpointWriter(background=tcfg.checkpoint_async) if info.is_main else nullcontext()
    stop = StopRequest()
    try:
        stop.install()
        with writer:
            checkpoints = EpochCheckpoints(writer, tcfg.checkpoint_interval_s) if info.is_main else None
            stopped_by = _epochs(ctx, net, data, caches, parts, state, logs, checkpoints, stop)
        stop.restore(deliver_late_signal=stopped_by is None)
    finally:
        stop.restore()
    if stopped_by is not None:  # last.pt holds the epoch; the final evaluation waits for the resumed run
        logs.close()
        raise TrainingInterrupted(stopped_by, state.epoch, folder.path)

    # the final model (best.pt with validation, else the last epoch) and its evaluation
    final = load_final_model(ctx, data.validating, net.trainable, state.epoch)
    model = net.model.eval()
    test_results, test_skipped = evaluate_final_model(ctx, model, final) if tcfg.final_eval and info.is_main else ([], [])
    barrier(info)
    logs.close()
    ctx.say(f"run folder: {folder.path}")
    return TrainResult(
        run_dir=folder.path,
        epochs=state.epoch,
        steps=state.step,
        best_metric=state.best_metric,
        history=list(logs.history),
        test_results=test_results,
        test_skipped=[str(sample) for sample in test_skipped],
        model=model,
        checkpoint=final.path,
    )


def _epochs(ctx: RunContext, net, data, caches, parts, state: RunState, logs: RunLogs,
            checkpoints: EpochCheckpoints | None, stop: StopRequest) -> int | None:
    """Train the remaining epochs, each: steps, validation (opt-in), checkpoints (rank 0), log.

    Returns:
        The signal that stopped the run after an epoch, ``None`` when every epoch ran.
    """
    tcfg, info = ctx.cfg.train, ctx.info
    higher_is_better = monitor_direction(tcfg)
    first_epoch = state.epoch + 1
    for epoch in range(first_epoch, tcfg.epochs + 1):
        if state.reached(tcfg.max_steps):
            break
        epoch_start = time.perf_counter()
        stats = train_one_epoch(ctx, parts, state, epoch, logs)
        last_epoch = epoch == tcfg.epochs or state.reached(tcfg.max_steps)
        validation_start = time.perf_counter()
        validation = validate(ctx, net.model, data, caches) if validation_due(ctx, data, epoch, last_epoch) else None
        validation_seconds = time.perf_counter() - validation_start if validation is not None else 0.0
        improved = state.update_best(monitored_value(validation, tcfg.monitor), higher_is_better)
        state.epoch = epoch
        stopped_by = stop.agreed(info)  # every process stops after the same epoch
        if info.is_main:
            final = last_epoch or stopped_by is not None
            checkpoint_seconds, written = save_epoch_checkpoints(ctx, parts, state, improved, checkpoints, final)
            timing = EpochTiming(stats.seconds, validation_seconds, checkpoint_seconds, written,
                                 total=time.perf_counter() - epoch_start)
            record = epoch_record(ctx, parts, state, epoch, stats, validation, improved, timing)
            logs.epoch(record, plot_now=last_epoch or epoch == first_epoch)
            ctx.say(format_epoch_summary(record, tcfg.epochs, tcfg.monitor, state.best_metric))
        barrier(info)
        if stopped_by is not None:
            return stopped_by
    return None
