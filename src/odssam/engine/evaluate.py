"""Evaluation of a trained model on a dataset, from decoded images or from the cache.

Predictions are probability maps at the size of the dataset's images (after the
dataset's own resizing, e.g. 512x512 for MoNuSeg), compared with the masks at that size
by :class:`odssam.metrics.evaluator.Evaluator`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from odssam.data.sample import collate_samples
from odssam.engine.cache import CacheRecord, CachedEvaluationSet, EmbeddingCache, collate_cached_eval
from odssam.engine.progress import progress_bar
from odssam.inference.io import write_probability_png
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.result import MetricResult
from odssam.utils.device import autocast


def logits_to_probabilities(model, logits: torch.Tensor, input_sizes, image_shapes) -> list[np.ndarray]:
    """Decoder logits Bx1xhxw -> one HxW float32 probability map per image, at its own size."""
    maps = model.postprocess(logits.float(), input_sizes, image_shapes)
    return [torch.sigmoid(one[0]).cpu().numpy() for one in maps]


@torch.no_grad()
def predict_probabilities(model, images: Sequence[np.ndarray], amp_dtype: torch.dtype | None = None) -> list[np.ndarray]:
    """HxWx3 uint8 images -> HxW float32 probability maps (the full model, encoder included)."""
    x, input_sizes, original_sizes = model.preprocess(list(images))
    with autocast(x.device, amp_dtype):
        logits = model(x)
    return logits_to_probabilities(model, logits, input_sizes, original_sizes)


@torch.no_grad()
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
    evaluator = Evaluator(metrics=metrics, name=name)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples)
    if progress:
        loader = progress_bar(loader, desc=f"eval {name}", total=len(loader))
    kept: list[tuple] = []
    for samples in loader:
        probabilities = predict_probabilities(model, [s.image for s in samples], amp_dtype)
        for sample, probability in zip(samples, probabilities):
            evaluator.update(probability, sample.mask)
            if prediction_dir is not None:
                write_probability_png(probability, Path(prediction_dir) / f"{sample.name}.png")
            if len(kept) < keep_samples:
                kept.append((sample.image, sample.mask, probability, sample.name))
    return evaluator.compute(), kept


@torch.no_grad()
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
    device = next(model.prompt_encoder.parameters()).device
    evaluator = Evaluator(metrics=metrics, name=name)
    loader = DataLoader(
        CachedEvaluationSet(cache, records),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_cached_eval,
        pin_memory=device.type == "cuda",
    )
    if progress:
        loader = progress_bar(loader, desc=f"eval {name}", total=len(loader))
    for batch in loader:
        prompt_input = batch["prompt_input"].to(device, non_blocking=True).float()
        embedding = batch["embedding"].to(device, non_blocking=True).float()
        with autocast(device, amp_dtype):
            logits = model(prompt_input, image_embeddings=embedding)
        probabilities = logits_to_probabilities(model, logits, batch["input_sizes"], batch["image_shapes"])
        for probability, mask in zip(probabilities, batch["masks"]):
            evaluator.update(probability, mask)
    return evaluator.compute()

