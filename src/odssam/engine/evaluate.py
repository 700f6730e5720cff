"""Evaluation of a trained model on a dataset, from decoded images or from the cache.

Predictions are probability maps at the size of the dataset's images (after the
dataset's own resizing, e.g. 512x512 for MoNuSeg), compared with the masks at that size
by :class:`odssam.metrics.evaluator.Evaluator`.

A sample that cannot be read (or is too elongated for the model's input) does not stop
the DataLoader: its worker hands on a :class:`SkippedSample` instead. Callers that pass a
``skipped`` list get the others scored and the skipped ones listed there (the final
evaluation, ``odssam eval``); the others (validation) get the first one as an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
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
from odssam.errors import OdsSamError
from odssam.inference.io import write_probability_png
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.result import MetricResult
from odssam.models.transforms import PreprocessSpec
from odssam.utils.atomic import atomic_write_text
from odssam.utils.progress import progress_bar


@dataclass(frozen=True)
class SkippedSample:
    """A sample evaluation could not score.

    Attributes:
        name: Sample name.
        reason: Why, naming the file (the image's or the mask's).
    """

    name: str
    reason: str

    def __str__(self) -> str:
        return f"skipped {self.name}: {self.reason}"


class _SkippingUnreadable(Dataset):
    """``dataset`` whose unreadable items are :class:`SkippedSample` markers instead of errors.

    Decoding runs in DataLoader workers, where an exception would end the whole evaluation.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int):
        try:
            return self.dataset[item]
        except OdsSamError as error:  # dataset readers name the file in every message
            names = getattr(self.dataset, "names", None)
            return SkippedSample(names[item] if names is not None else f"item {item}", str(error))


class _StageSamples:
    """DataLoader collate, run in the workers: ``(samples, skipped)`` with the samples' images staged."""

    def __init__(self, spec: PreprocessSpec, device: torch.device):
        self.spec, self.device = spec, device

    def __call__(self, items: list) -> HostBatch:
        samples, skipped = [], []
        for item in items:
            if isinstance(item, SkippedSample):
                skipped.append(item)
                continue
            problem = self.spec.size_problem(*item.image.shape[:2])  # the resize would fail the whole batch
            if problem is not None:
                skipped.append(SkippedSample(item.name, f"{item.path}: {problem}"))
            else:
                samples.append(item)
        # Pinned later, by the DataLoader in the main process: a worker's pinned memory would not reach it.
        staged = [stage_image(sample.image, self.spec, self.device, pin=False) for sample in samples]
        return HostBatch((samples, skipped), staged)


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
    skipped: list[SkippedSample] | None = None,
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
        skipped: If given, samples that cannot be read (or are too elongated for the
            model's input) are appended to it and the others scored; if ``None``, the first
            such sample raises.

    Returns:
        ``(result, kept)``.

    Raises:
        OdsSamError: For an unreadable sample when ``skipped`` is ``None``.
    """
    model.eval()
    inference = BatchInference(model, amp_dtype=amp_dtype)
    evaluator = Evaluator(metrics=metrics, name=name)
    stage = _StageSamples(inference.spec, inference.device)
    loader = _loader(_SkippingUnreadable(dataset), stage, batch_size, num_workers, inference.device)
    if progress:
        loader = progress_bar(loader, desc=f"eval {name}", total=len(loader))
    kept: list[tuple] = []
    for batch, probabilities in one_in_flight(loader, lambda batch: inference.launch(batch.images)):
        samples, unreadable = batch.payload
        if unreadable and skipped is None:
            raise OdsSamError(unreadable[0].reason)
        if skipped is not None:
            skipped.extend(unreadable)
        for sample, probability in zip(samples, probabilities):
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


def write_skipped(skipped: Sequence[SkippedSample], out_dir: str | Path, stem: str = "report") -> Path | None:
    """List skipped samples in ``<stem>.md`` (a section appended) and ``<stem>-skipped.json``.

    ``<stem>.json`` and ``<stem>.csv`` keep the scores alone, in their usual format.

    Returns:
        The JSON list, or ``None`` when nothing was skipped.
    """
    if not skipped:
        return None
    out = Path(out_dir)
    markdown = out / f"{stem}.md"
    lines = [f"## Skipped: {len(skipped)} unreadable sample(s), not scored", ""]
    lines += [f"- {sample.name}: {sample.reason}" for sample in skipped]
    atomic_write_text(markdown, markdown.read_text(encoding="utf-8") + "\n" + "\n".join(lines) + "\n")
    return atomic_write_text(out / f"{stem}-skipped.json", json.dumps([asdict(s) for s in skipped], indent=2) + "\n")
