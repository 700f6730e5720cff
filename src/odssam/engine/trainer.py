"""The training loop, top to bottom: ``odssam train`` in one function.

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
  (``last.pt``). No test image is opened before the final evaluation.
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

import contextlib
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from odssam.config import ExperimentConfig, to_dict
from odssam.engine import checkpoint as ckpt
from odssam.engine.augment import DecodedTrainingSet
from odssam.engine.cache import CacheParams, CachedTrainingSet, EmbeddingCache, build_embedding_cache, embedding_from_batch
from odssam.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup_distributed,
    init_distributed,
)
from odssam.engine.evaluate import evaluate_cached, evaluate_dataset
from odssam.engine.logging import (
    MetricsLog,
    TensorBoardLog,
    format_epoch_summary,
    plot_history,
    write_json_atomic,
)
from odssam.engine.graphed_step import GraphedStep, graph_unsupported_reason, warmup_steps
from odssam.engine.precision import autocast, autocast_dtype
from odssam.engine.progress import progress_bar
from odssam.engine.targets import TrainingLoss, batch_layout, collate_training_items, loss_resolution
from odssam.engine.targets import target_size as target_sizes
from odssam.engine.setup import (
    build_split,
    check_train_config,
    monitor_direction,
    test_splits,
)
from odssam.errors import OdsSamError
from odssam.metrics.result import MetricResult
from odssam.models.loss import DiceBCELoss
from odssam.models.registry import build_model
from odssam.utils.atomic import atomic_write_text

LOG_INTERVAL = 10  # steps between loss syncs (progress bar, TensorBoard, NaN check)
PLOT_EVERY = 10  # epochs between redraws of curves.png (also drawn after the first and last)


class TrainingDiverged(OdsSamError):
    """The loss became NaN or infinite; the run folder keeps the last good checkpoint."""


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
        OdsSamError: Bad config or data, a run folder in the way, or a diverged loss
            (:class:`TrainingDiverged`).
    """
    owns_process_group = not torch.distributed.is_initialized()
    info = init_distributed(device)
    try:
        return _train(cfg, info, run_dir=run_dir, resume=resume, progress=progress)
    finally:
        if owns_process_group:
            cleanup_distributed()


def _train(cfg: ExperimentConfig, info: DistInfo, *, run_dir, resume: bool, progress: bool) -> TrainResult:
    tcfg, dcfg = cfg.train, cfg.data
    main = info.is_main
    say = print if main else (lambda *args, **kwargs: None)
    device = info.device
    check_train_config(cfg, info.world_size)
    amp_dtype = autocast_dtype(tcfg.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run_dir = Path(run_dir or Path(tcfg.output_dir) / (tcfg.run_name or cfg.name))
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    # ------------------------------------------------------------------ resume or fresh start
    resumed = None
    if resume:
        resumed = ckpt.load_checkpoint(last_path)
        stored_model = ckpt.resumable_model_config(resumed["config"]["model"])
        if stored_model != ckpt.resumable_model_config(to_dict(cfg.model)):
            raise OdsSamError(f"{last_path}: the model config differs from the one being resumed; resume with its config")
        if "optimizer" not in resumed:
            raise OdsSamError(f"{last_path}: holds no optimizer state, so it cannot be resumed")
    elif last_path.exists():
        raise OdsSamError(
            f"{run_dir} already holds a run (last.pt): pass --resume to continue it, "
            "or choose another train.run_name / train.output_dir"
        )

    # ------------------------------------------------------------------ model
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed)
    random.seed(tcfg.seed)
    # A resumed run's weights come from last.pt: the feature encoder's starting file is not read.
    model = build_model(cfg.model, feature_encoder_weights=resumed is None).to(device)
    prompt_encoder = model.trainable  # the module whose weights checkpoints hold
    sam_fingerprint = model.frozen_fingerprint()
    channels_last = device.type == "cuda" if tcfg.channels_last is None else tcfg.channels_last
    model.set_channels_last(channels_last)
    if tcfg.compile:
        model.prompt_encoder = torch.compile(prompt_encoder)
    weights = cfg.model.sam.checkpoint or f"RANDOM weights (init_seed {cfg.model.sam.init_seed}): scores are not meaningful"
    say(f"SAM {cfg.model.sam.variant} at {model.image_size}px: {weights}")
    say(f"prompt encoder: {sum(p.numel() for p in model.trainable_parameters()) / 1e6:.3f} M trainable parameters")
    say(f"feature encoder starts from: {'last.pt (resumed)' if resumed else prompt_encoder.weights_description}")

    # ------------------------------------------------------------------ data
    split_path = run_dir / "splits" / "split.json"
    recorded_split = split_path if resume and split_path.is_file() else None
    # Test images are only listed here (split record); they are first opened by the final
    # evaluation, after training.
    validating = dcfg.val_count > 0
    train_set = build_split(dcfg, "train", recorded_split)
    val_set = build_split(dcfg, "val", recorded_split) if validating else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json_atomic(split_path, train_set.split_record())
    if validating:
        say(f"data: {dcfg.dataset} train {len(train_set)} images, val {len(val_set)} images (select best.pt)")
    else:
        say(f"data: {dcfg.dataset} train {len(train_set)} images, no validation (the final model is the last epoch's)")

    # ------------------------------------------------------------------ embedding cache
    use_cache_for_training = tcfg.cache_embeddings and not tcfg.augment
    resolution = loss_resolution(tcfg)
    if tcfg.full_resolution_loss:
        warnings.warn(
            "train.full_resolution_loss is deprecated: read as train.loss_resolution: input", FutureWarning, stacklevel=2
        )
    target_size = target_sizes(resolution, model.image_size, model.logit_size)
    cache = val_records = None
    if tcfg.cache_embeddings:
        cache_dir = Path(tcfg.cache_dir) if tcfg.cache_dir else run_dir.parent / ".embedding-cache"
        params = CacheParams(
            sam_fingerprint, model.image_size, model.prompt_input_size, target_size, tcfg.cache_dtype,
            embedding_parts=len(model.segmenter.embedding_shapes()), resize=model.preprocess_spec.resize,
        )
        cache = EmbeddingCache(cache_dir, params)
        build = dict(batch_size=tcfg.batch_size, num_workers=dcfg.num_workers, autocast_dtype=amp_dtype, progress=progress)
        cache_report = {"dir": str(cache_dir)}
        if use_cache_for_training:
            train_records, stats = build_embedding_cache(model, train_set, cache, info, description="cache train", **build)
            cache_report["train"] = stats.to_dict()
            say(f"cache train: {stats.embedding_hits} hits, {stats.embedding_misses} computed in {stats.seconds:.1f} s")
        if validating:
            val_records, stats = build_embedding_cache(model, val_set, cache, info, description="cache val", **build)
            cache_report["val"] = stats.to_dict()
            say(f"cache val: {stats.embedding_hits} hits, {stats.embedding_misses} computed in {stats.seconds:.1f} s")
        if main:
            write_json_atomic(run_dir / ("cache.json" if not resume else "cache-resumed.json"), cache_report)
    if use_cache_for_training:
        train_items = CachedTrainingSet(cache, train_records)
    else:
        train_items = DecodedTrainingSet(
            train_set, model.preprocess_spec, target_size, tcfg.augment, tcfg.color_jitter, tcfg.seed
        )
    per_rank_batch = tcfg.batch_size // info.world_size
    sampler = DistributedSampler(
        train_items, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=tcfg.seed
    )
    no_graph_reason = graph_unsupported_reason(cfg, device, info.world_size, use_cache_for_training)
    use_graph = tcfg.cuda_graph and no_graph_reason is None
    # Under DDP every step replays the graph (all-reduce included), so a last partial batch,
    # which would need an eager step, is left out of the epoch.
    drop_partial_batch = use_graph and info.is_distributed and len(sampler) >= per_rank_batch
    loader = DataLoader(
        train_items,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=dcfg.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_partial_batch,
        collate_fn=collate_training_items,
        # Cached items have no per-epoch state, so workers can live across epochs.
        persistent_workers=use_cache_for_training and dcfg.num_workers > 0,
        # Worker seeds come from here, not from the global RNG, whose stream must not depend
        # on how often a loader was (re)started: a resumed run replays it from the checkpoint.
        generator=torch.Generator().manual_seed(tcfg.seed),
    )

    # ------------------------------------------------------------------ optimizer and schedule
    # On CUDA: one fused kernel for the whole update (the multi-tensor path falls back to a
    # kernel per tensor with channels-last weights), capturable so a CUDA graph can hold it.
    cuda_options = dict(fused=True, capturable=True) if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(model.parameter_groups(tcfg.weight_decay), lr=tcfg.lr, **cuda_options)
    steps_per_epoch = len(loader)
    total_steps = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps is not None:
        total_steps = min(total_steps, tcfg.max_steps)
    scheduler = None
    if tcfg.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    training_loss = TrainingLoss(DiceBCELoss(tcfg.dice_weight, tcfg.bce_weight), resolution, model.image_size)
    higher_is_better = monitor_direction(tcfg)

    start_epoch, step, best_metric = 0, 0, None
    if resumed is not None:
        prompt_encoder.load_state_dict(resumed["prompt_encoder"])
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None and resumed.get("scheduler") is not None:
            scheduler.load_state_dict(resumed["scheduler"])
        ckpt.restore_rng_state(resumed["rng"])
        start_epoch, step, best_metric = resumed["epoch"], resumed["step"], resumed["best_metric"]
        say(f"resuming {run_dir} after epoch {start_epoch} (step {step})")
        if use_graph and not all(group.get("capturable") for group in optimizer.param_groups):
            use_graph, no_graph_reason = False, "the resumed optimizer state is not capturable"
    if tcfg.cuda_graph and device.type == "cuda":
        say("training step: CUDA graph" if use_graph else f"training step: eager ({no_graph_reason})")

    capture_stream = torch.cuda.Stream(device) if use_graph else None
    train_model = model
    if info.is_distributed:
        # Depthwise kernels (Cx1xkxk) get gradients whose stride along the size-1 dim differs
        # from the weight's: the same memory layout, but DDP warns about it once per process.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        device_ids = [device.index] if device.type == "cuda" else None
        # BatchNorm buffers are made equal once per epoch (broadcast_buffers below), not by
        # a broadcast before every forward; the graph is the same every step.
        # Built on the graph's side stream, so the step, all-reduce included, can be a CUDA graph.
        with torch.cuda.stream(capture_stream) if capture_stream is not None else contextlib.nullcontext():
            train_model = DistributedDataParallel(
                model, device_ids=device_ids, gradient_as_bucket_view=True, broadcast_buffers=False, static_graph=True
            )
    metrics_log = MetricsLog(run_dir / "metrics.jsonl", keep_epochs_up_to=start_epoch) if main else None
    tensorboard = TensorBoardLog(run_dir / "tensorboard", purge_step=step) if main else None
    history = metrics_log.records if main else []

    def checkpoint_payload(epoch: int, with_training_state: bool) -> dict:
        payload = {
            "format": ckpt.CHECKPOINT_FORMAT,
            "version": ckpt.CHECKPOINT_VERSION,
            "config": to_dict(cfg),
            "prompt_encoder": {k: v.detach().cpu() for k, v in prompt_encoder.state_dict().items()},
            "sam_fingerprint": sam_fingerprint,
            "epoch": epoch,
            "step": step,
            "best_metric": best_metric,
        }
        if with_training_state:
            payload["optimizer"] = optimizer.state_dict()
            payload["scheduler"] = scheduler.state_dict() if scheduler is not None else None
            payload["rng"] = ckpt.capture_rng_state()
        return payload

    def training_step(target: torch.Tensor, *inputs: torch.Tensor, layout=None) -> torch.Tensor:
        """Forward, loss, backward and optimizer step on one batch already on the device.

        ``layout``: per-image sizes of a label-resolution batch (:func:`batch_layout`).
        """
        with autocast(device, amp_dtype, cache_enabled=not use_graph):
            if use_cache_for_training:
                # Copied in their stored 16-bit form, widened on the device.
                prompt_input, *embedding = (tensor.float() for tensor in inputs)
                logits = train_model(prompt_input, image_embeddings=tuple(embedding))
            else:
                logits = train_model(inputs[0])
        loss = training_loss(logits, target, layout)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    graphed_step = GraphedStep(training_step, warmup_steps(info.world_size), capture_stream, say) if use_graph else None

    # ------------------------------------------------------------------ epochs
    epoch = completed_epochs = start_epoch
    for epoch in range(start_epoch + 1, tcfg.epochs + 1):
        if tcfg.max_steps is not None and step >= tcfg.max_steps:
            break
        epoch_values = model.start_epoch(epoch - 1, tcfg)
        sampler.set_epoch(epoch)
        if isinstance(train_items, DecodedTrainingSet):
            train_items.set_epoch(epoch)
        model.train()
        epoch_start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        window_sum = torch.zeros((), dtype=torch.float64, device=device)
        window_steps = batches = images = 0
        bar = progress_bar(loader, desc=f"epoch {epoch}/{tcfg.epochs}", total=len(loader)) if progress and main else loader
        for batch in bar:
            target = batch["target"]
            inputs = (batch["prompt_input"], *embedding_from_batch(batch)) if use_cache_for_training else (batch["x"],)
            layout = batch_layout(batch)
            if graphed_step is not None:
                loss = graphed_step(target, *inputs, layout=layout)
            else:
                loss = training_step(*(t.to(device, non_blocking=True) for t in (target, *inputs)), layout=layout)
            if scheduler is not None:
                scheduler.step()
            step += 1
            batches += 1
            images += target.shape[0]
            loss_sum += loss.detach()
            window_sum += loss.detach()
            window_steps += 1
            last_of_epoch = batches == len(loader) or (tcfg.max_steps is not None and step >= tcfg.max_steps)
            if window_steps == LOG_INTERVAL or last_of_epoch:
                # One sync per interval: cheap, and every rank reaches the same NaN verdict.
                window_loss = float(all_reduce_sum(window_sum, info).item()) / (window_steps * info.world_size)
                if not math.isfinite(window_loss):
                    raise TrainingDiverged(_diverged_message(window_loss, epoch, step, run_dir, last_path))
                if tensorboard:
                    tensorboard.scalar("train/loss_step", window_loss, step)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{window_loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                window_sum.zero_()
                window_steps = 0
            if tcfg.max_steps is not None and step >= tcfg.max_steps:
                break
        broadcast_buffers(prompt_encoder, info)  # per-process BatchNorm statistics -> rank 0's
        train_loss = float(all_reduce_sum(loss_sum, info).item()) / (max(batches, 1) * info.world_size)
        epoch_seconds = time.perf_counter() - epoch_start
        images_per_second = images * info.world_size / max(epoch_seconds, 1e-9)

        # -------------------------------------------------------------- validate, checkpoint, log
        validation = None
        last_epoch = epoch == tcfg.epochs or (tcfg.max_steps is not None and step >= tcfg.max_steps)
        if main and validating and (epoch % tcfg.eval_every == 0 or last_epoch):
            eval_args = dict(name="val", metrics=tcfg.metrics, batch_size=per_rank_batch, amp_dtype=amp_dtype)
            if val_records is not None:
                validation = evaluate_cached(model, cache, val_records, num_workers=dcfg.num_workers, **eval_args)
            else:
                validation, _ = evaluate_dataset(model, val_set, num_workers=dcfg.num_workers, **eval_args)
        monitored = validation.values.get(tcfg.monitor) if validation is not None else None
        improved = monitored is not None and math.isfinite(monitored) and (
            best_metric is None or (monitored > best_metric if higher_is_better else monitored < best_metric)
        )
        if improved:
            best_metric = monitored
        record = {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": epoch_seconds,
            "images_per_second": images_per_second,
            **epoch_values,
            "val": validation.values if validation is not None else None,
            "monitor": monitored,
            "best": improved,
        }
        if device.type == "cuda":
            record["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        completed_epochs = epoch
        if main:
            ckpt.save_checkpoint(last_path, checkpoint_payload(epoch, with_training_state=True))
            if improved:
                ckpt.save_checkpoint(best_path, checkpoint_payload(epoch, with_training_state=False))
            metrics_log.append(record)
            tensorboard.epoch(record)
            if epoch % PLOT_EVERY == 0 or last_epoch or epoch == start_epoch + 1:
                plot_history(history, run_dir / "curves.png", tcfg.monitor)
            say(format_epoch_summary(record, tcfg.epochs, tcfg.monitor, best_metric))
        barrier(info)

    # ------------------------------------------------------------------ final model and evaluation
    # The last epoch's weights are in memory (and in last.pt); with validation the final
    # model is best.pt (last.pt only if no epoch got a finite validation score).
    final_path = best_path if validating and best_path.exists() else last_path
    final_epoch = completed_epochs
    if final_path == best_path:  # every rank, so all end with the same weights
        best = ckpt.load_checkpoint(best_path)
        prompt_encoder.load_state_dict(best["prompt_encoder"])
        final_epoch = best["epoch"]
    model.eval()
    test_results: list[MetricResult] = []
    if tcfg.final_eval:
        for name, dataset in test_splits(dcfg, say) if main else ():
            if dcfg.test_sets:
                write_json_atomic(run_dir / "splits" / f"test-{name}.json", dataset.split_record())
            result, _ = evaluate_dataset(
                model, dataset, name=name, metrics=tcfg.metrics, batch_size=per_rank_batch,
                num_workers=dcfg.num_workers, amp_dtype=amp_dtype, progress=progress,
            )
            test_results.append(result)
        if test_results:
            from odssam.metrics.report import format_table, write_report

            chosen = f"best val {tcfg.monitor}" if final_path == best_path else "last epoch"
            title = f"{cfg.name}: {final_path.name} (epoch {final_epoch}, {chosen}) on the test split" + (
                "s" if len(test_results) > 1 else ""
            )
            write_report(test_results, run_dir, "report", title=title)
            say(format_table(test_results, legend=False))
    barrier(info)
    if tensorboard:
        tensorboard.close()
    say(f"run folder: {run_dir}")
    return TrainResult(
        run_dir=run_dir,
        epochs=completed_epochs,
        steps=step,
        best_metric=best_metric,
        history=list(history),
        test_results=test_results,
        model=model.eval(),
        checkpoint=final_path,
    )


def _diverged_message(loss: float, epoch: int, step: int, run_dir: Path, last_path: Path) -> str:
    if last_path.exists():
        kept = f"the last good checkpoint is {last_path} (epoch {ckpt.load_checkpoint(last_path)['epoch']})"
    else:
        kept = f"no checkpoint was written yet in {run_dir}"
    return (
        f"training stopped: the loss became {loss} in epoch {epoch} (by step {step}); {kept}. "
        "Lower train.lr, or check the data for empty or corrupt masks"
    )
