"""Evaluation of a trained model on a dataset, from decoded images or from the cache.

Predictions are probability maps at the size of the dataset's images (after the
dataset's own resizing, e.g. 512x512 for MoNuSeg), compared with the masks at that size
by :class:`odssam.metrics.evaluator.Evaluator`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from odssam.engine.cache import (
    CacheRecord,
    CachedEvaluationSet,
    EmbeddingCache,
    collate_cached_eval,
    embedding_from_batch,
)
from odssam.inference.batch import BatchInference, HostBatch, PendingMaps, one_in_flight, stage_image
from odssam.inference.io import write_probability_png
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.result import MetricResult
from odssam.models.transforms import PreprocessSpec
from odssam.utils.large_on_cpu import eta_after_first_batch
from odssam.utils.progress import progress_bar


class _StageSamples:
    """DataLoader collate, run in the workers: the samples and their images staged for the device."""

    def __init__(self, spec: PreprocessSpec, device: torch.device):
        self.spec, self.device = spec, device

    def __call__(self, samples: list) -> HostBatch:
        # Pinned later, by the DataLoader in the main process: a worker's pinned memory would not reach it.
        staged = [stage_image(sample.image, self.spec, self.device, pin=False) for sample in samples]
        return HostBatch(list(samples), staged)


def _loader(dataset: Dataset, collate, batch_size: int, num_workers: int, device: torch.device):
    """Batches pinned by the DataLoader for a CUDA device, so their uploads do not wait."""
    pin = device.type == "cuda"
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate, pin_memory=pin)


def evaluate_dataset(
    model,
    dataset: Dataset,
    *,
    name: str,
    metrics: str | Iterable[str] = "default",
    batch_size: int = 4,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    prediction_dir: str | Path | None = None,
    keep_samples: int = 0,
) -> tuple[MetricResult, list[tuple]]:
    """Run the full model on every sample of ``dataset`` and score it.

    Images are decoded (and, for CPU inference, preprocessed) in the DataLoader workers,
    resized on a GPU, and one batch stays in flight (:mod:`odssam.inference.batch`, the
    path of :class:`~odssam.inference.predictor.Predictor`).

    Args:
        model: :class:`~odssam.models.ods_sam.OdsSam` (put in eval mode here).
        dataset: Dataset of :class:`~odssam.data.sample.Sample`.
        name: Name of the result (a column of the report tables).
        metrics: Metric names for :class:`Evaluator`.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers decoding images.
        amp_dtype: Autocast dtype (``None``: fp32).
        progress: Show a progress bar.
        prediction_dir: If set, write each probability map there as an 8-bit PNG named
            after the sample.
        keep_samples: Also return the first this many ``(image, mask, probability, name)``
            tuples (for figure grids).

    Returns:
        ``(result, kept)``.
    """
    model.eval()
    inference = BatchInference(model, amp_dtype=amp_dtype)
    evaluator = Evaluator(metrics=metrics, name=name)
    loader = _loader(dataset, _StageSamples(inference.spec, inference.device), batch_size, num_workers, inference.device)
    if progress:
        loader = progress_bar(loader, desc=f"eval {name}", total=len(loader))
    loader = eta_after_first_batch(loader, model, total_images=len(dataset), images_in=lambda batch: len(batch.images))
    kept: list[tuple] = []
    for batch, probabilities in one_in_flight(loader, lambda batch: inference.launch(batch.images)):
        for sample, probability in zip(batch.payload, probabilities):
            evaluator.update(probability, sample.mask)
            if prediction_dir is not None:
                write_probability_png(probability, Path(prediction_dir) / f"{sample.name}.png")
            if len(kept) < keep_samples:
                kept.append((sample.image, sample.mask, probability, sample.name))
    return evaluator.compute(), kept


def evaluate_cached(
    model,
    cache: EmbeddingCache,
    records: Sequence[CacheRecord],
    *,
    name: str,
    metrics: str | Iterable[str] = "default",
    batch_size: int = 4,
    num_workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> MetricResult:
    """Like :func:`evaluate_dataset`, on cached embeddings and prompt inputs: no decoding, no encoder."""
    model.eval()
    inference = BatchInference(model, amp_dtype=amp_dtype)
    device = inference.device
    evaluator = Evaluator(metrics=metrics, name=name)
    loader = _loader(CachedEvaluationSet(cache, records), collate_cached_eval, batch_size, num_workers, device)
    if progress:
        loader = progress_bar(loader, desc=f"eval {name}", total=len(loader))

    def launch(batch: dict) -> PendingMaps:
        prompt_input = batch["prompt_input"].to(device, non_blocking=True).float()
        embedding = tuple(part.to(device, non_blocking=True).float() for part in embedding_from_batch(batch))
        return inference.probabilities(prompt_input, batch["input_sizes"], batch["image_shapes"], embedding)

    for batch, probabilities in one_in_flight(loader, launch):
        for probability, mask in zip(probabilities, batch["masks"]):
            evaluator.update(probability, mask)
    return evaluator.compute()
