"""Prediction on images of any size: the model behind a small, batched, pipelined API.

Per image: decode (files) -> RGB uint8 -> SAM preprocessing (resize the longest side to
S, normalise, pad to SxS) -> frozen SAM encoder and learned prompt -> mask decoder
logits Bx1x(S/4)x(S/4) -> upsample, crop the padding, resize to the original HxW ->
sigmoid. Decoding runs in a thread pool ahead of the model (and on the CPU the
preprocessing too; on a GPU the resize runs there). bf16 autocast on CUDA by default.

Example::

    import numpy as np
    import odssam

    predictor = odssam.load("runs/mvtec_bottle/last.pt")     # an odssam training checkpoint
    result = predictor.predict(np.zeros((300, 400, 3), np.uint8))
    result.probability.shape, result.mask.dtype, result.score  # (300, 400), bool, max probability
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odssam.errors import OdsSamError
from odssam.inference.batch import BatchInference, HostImage, PendingMaps, one_in_flight
from odssam.inference.io import InputImage, to_rgb
from odssam.inference.prefetch import prefetch_map
from odssam.utils.device import PRECISIONS, resolve_device, resolve_precision  # noqa: F401 (re-exported)
from odssam.utils.large_on_cpu import eta_after_first_batch, warn_large_model_on_cpu
from odssam.utils.progress import progress_bar


@dataclass
class Prediction:
    """The prediction for one image.

    Attributes:
        name: Image name (file stem, or the name given).
        probability: HxW float32 anomaly probability at the image's original size.
        mask: HxW bool, ``probability > threshold``.
        score: Image-level score: the maximum probability.
        area_fraction: Fraction of the image's pixels in the mask.
        threshold: Threshold that made the mask.
        source: The file it was read from, if any.
    """

    name: str
    probability: np.ndarray
    mask: np.ndarray
    score: float
    area_fraction: float
    threshold: float = 0.5
    source: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the image."""
        return tuple(self.probability.shape)


@dataclass
class PredictionResult:
    """One item of :meth:`Predictor.predict_stream`: a prediction, or why there is none.

    Attributes:
        name: Output name of the item.
        source: The file path, or ``None`` for an in-memory image.
        prediction: The :class:`Prediction` (``None`` if the image could not be read).
        image: The decoded HxWx3 uint8 image (only with ``keep_images``).
        error: What went wrong (``None`` on success).
    """

    name: str
    source: str | None
    prediction: Prediction | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.prediction is not None


@dataclass
class _Loaded:
    name: str
    source: str | None
    image: np.ndarray
    staged: HostImage  # preprocessed in the worker (CPU inference) or pinned (GPU inference)


def _name_of(image: Any, index: int | None) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).stem
    filename = getattr(image, "filename", "")
    if filename:
        return Path(filename).stem
    return "image" if index is None else f"image_{index:04d}"


class Predictor:
    """Runs a trained ODS-SAM model on images of any size.

    Build it with :func:`odssam.load` or :meth:`from_checkpoint`; or wrap a model in memory.

    Args:
        model: An :class:`~odssam.models.ods_sam.OdsSam` (moved to ``device``, eval mode).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:N``.
        threshold: Probability above which a pixel is in the mask.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on the CPU), ``bf16`` or ``fp32``.
        batch_size: Images per forward pass.
        num_workers: Threads decoding (and, on the CPU, preprocessing) images ahead of
            the model; 0 does it inline. Default: up to 8 with a GPU, 2 on the CPU.
        config: The :class:`~odssam.config.ExperimentConfig` the model was trained with.
        cuda_graph: On a GPU, record the model's forward once as a CUDA graph and replay it
            for every full batch (:mod:`odssam.inference.graphed_forward`): the same maps,
            far fewer kernel launches by the host. ``False``: the eager forward. No effect
            on the CPU.

    Example::

        predictor = Predictor(model, device="cpu")
        predictions = predictor.predict_batch(["a.png", "b.jpg"])
        [p.score for p in predictions]
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: str | torch.device | None = "auto",
        threshold: float = 0.5,
        precision: str = "auto",
        batch_size: int = 8,
        num_workers: int | None = None,
        config: Any = None,
        cuda_graph: bool = True,
    ):
        if not 0.0 <= threshold <= 1.0:
            raise OdsSamError(f"threshold must lie in [0, 1], got {threshold}")
        if batch_size < 1:
            raise OdsSamError(f"batch size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.amp_dtype = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model.set_channels_last(True)
        self.threshold = float(threshold)
        self.batch_size = int(batch_size)
        if num_workers is None:
            # A GPU leaves the CPU free for decoding; on the CPU the model needs the cores.
            num_workers = min(8 if self.device.type == "cuda" else 2, os.cpu_count() or 1)
        self.num_workers = max(0, int(num_workers))
        self.config = config
        self.cuda_graph = bool(cuda_graph)
        # One object for every batch of this predictor: a CUDA graph is recorded once and
        # lives as long as the predictor.
        self._inference = BatchInference(self.model, self.device, self.amp_dtype, cuda_graph=self.cuda_graph)
        warn_large_model_on_cpu(self.model)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike,
        device: str | torch.device | None = "auto",
        *,
        sam_checkpoint: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Load an odssam training checkpoint (``best.pt``/``last.pt``) into a predictor.

        Args:
            checkpoint: The checkpoint file.
            device: See :class:`Predictor`.
            sam_checkpoint: SAM weights to use instead of the path stored in the checkpoint's
                config (the same official file elsewhere on this machine).
            **kwargs: Further :class:`Predictor` arguments.
        """
        from odssam.checkpoint import load_model_from_checkpoint

        resolved = resolve_device(device)
        model, cfg = load_model_from_checkpoint(checkpoint, device="cpu", sam_checkpoint=sam_checkpoint)
        return cls(model, device=resolved, config=cfg, **kwargs)

    @property
    def image_size(self) -> int:
        """Side of SAM's padded square input."""
        return self.model.image_size

    @property
    def inference(self) -> BatchInference:
        """The model on this predictor's device and precision (:mod:`odssam.inference.batch`).

        The same object at every access (a CUDA graph recorded by it serves every later batch).
        """
        return self._inference

    # ------------------------------------------------------------------ public API

    def predict(self, image: Any, name: str | None = None) -> Prediction:
        """Predict one image.

        Args:
            image: A path, a PIL image, or an HxW / HxWxC array (uint8, 16-bit or float).
            name: Name stored in the result (default: the file stem or ``"image"``).

        Returns:
            A :class:`Prediction` at the image's original size.

        Raises:
            OdsSamError: The image cannot be read or has an unsupported type or shape.
        """
        loaded = self._load((image, name or _name_of(image, None)))
        maps, maxima = self.inference.launch([loaded.staged]).wait_with_maxima()
        return self._prediction(loaded, maps[0], maxima[0])

    def predict_batch(
        self, images: Sequence[Any], batch_size: int | None = None, names: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Predict several images (any mix of paths, PIL images and arrays, any sizes).

        Args:
            images: The images.
            batch_size: Images per forward pass (default: the predictor's).
            names: One name per image (default: file stems, or ``image_0000`` ...).

        Returns:
            One :class:`Prediction` per image, in order.

        Raises:
            OdsSamError: An image cannot be read (use :meth:`predict_stream` to skip those).
        """
        images = list(images)
        if names is not None and len(names) != len(images):
            raise OdsSamError(f"{len(names)} names for {len(images)} images")
        predictions = []
        for result in self.predict_stream(images, batch_size=batch_size, names=names):
            if result.error is not None:
                raise OdsSamError(result.error)
            predictions.append(result.prediction)
        return predictions

    def predict_stream(
        self,
        sources: Iterable[Any],
        batch_size: int | None = None,
        names: Sequence[str] | None = None,
        keep_images: bool = False,
        progress: bool = False,
        total: int | None = None,
    ) -> Iterator[PredictionResult]:
        """Predict images lazily, decoding ahead in threads; unreadable ones are reported, not raised.

        Args:
            sources: Paths, :class:`~odssam.inference.io.InputImage` items, PIL images or arrays.
            batch_size: Images per forward pass (default: the predictor's).
            names: One name per source (default: :class:`InputImage` names, file stems,
                or ``image_0000`` ...).
            keep_images: Attach the decoded image to each result (for overlays).
            progress: Show a progress bar.
            total: Number of sources, for the progress bar and, for a large model on the CPU,
                the ETA logged after the first batch (default: ``len(sources)`` if known).

        Yields:
            One :class:`PredictionResult` per source, in order.
        """
        batch_size = batch_size or self.batch_size
        if batch_size < 1:
            raise OdsSamError(f"batch size must be at least 1, got {batch_size}")
        if total is None and hasattr(sources, "__len__"):
            total = len(sources)
        named = self._named(sources, names)
        outcomes = prefetch_map(
            self._load, named, workers=self.num_workers, window=2 * batch_size + self.num_workers
        )
        bar = progress_bar(None, desc="predict", total=total, unit="img") if progress else None
        inference = self.inference

        def launch(pending: list[_Loaded | PredictionResult]) -> PendingMaps:
            return inference.launch([item.staged for item in pending if isinstance(item, _Loaded)])

        batches = self._batches(outcomes, batch_size)
        if total is not None and total > batch_size:
            batches = eta_after_first_batch(
                batches, self.model, total_images=total, images_in=_loaded_count, announce=False  # said at load
            )
        try:
            # One batch stays in flight: the GPU computes it while this thread turns the
            # previous batch's maps into results (and the workers decode the next images).
            for pending, (probabilities, maxima) in one_in_flight(batches, launch, PendingMaps.wait_with_maxima):
                yield from self._results(pending, probabilities, maxima, keep_images, bar)
        finally:
            outcomes.close()
            if bar is not None and hasattr(bar, "close"):
                bar.close()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _named(sources: Iterable[Any], names: Sequence[str] | None) -> Iterator[tuple[Any, str]]:
        for index, source in enumerate(sources):
            if names is not None:
                name = names[index]
            elif isinstance(source, InputImage):
                name = source.name
            else:
                name = _name_of(source, index)
            yield (source.path if isinstance(source, InputImage) else source), name

    def _load(self, item: tuple[Any, str]) -> _Loaded:
        """Decode and stage one image (preprocessed on the CPU, pinned for a GPU); runs in a worker thread."""
        source, name = item
        image = to_rgb(source, where=_source_text(source) or name)
        return _Loaded(name, _source_text(source), image, self.inference.stage(image))

    @staticmethod
    def _batches(outcomes: Iterable, batch_size: int) -> Iterator[list[_Loaded | PredictionResult]]:
        """Group decoded images by ``batch_size``; failures wait among them so results keep the input order."""
        pending: list[_Loaded | PredictionResult] = []
        loaded_count = 0
        for outcome in outcomes:
            source, name = outcome.item
            if outcome.error is not None:
                pending.append(PredictionResult(name, _source_text(source), error=_describe(outcome.error, source)))
                continue
            pending.append(outcome.value)
            loaded_count += 1
            if loaded_count == batch_size:
                yield pending
                pending, loaded_count = [], 0
        if pending:
            yield pending

    def _results(
        self, pending, probabilities: list[np.ndarray], maxima: list[float], keep_images: bool, bar
    ) -> Iterator[PredictionResult]:
        outputs = zip(probabilities, maxima)
        for item in pending:
            if isinstance(item, _Loaded):
                prediction = self._prediction(item, *next(outputs))
                result = PredictionResult(item.name, item.source, prediction, item.image if keep_images else None)
            else:
                result = item
            yield result
            _advance(bar)

    def _prediction(self, loaded: _Loaded, probability: np.ndarray, maximum: float) -> Prediction:
        """The prediction of one HxW map whose maximum was reduced on the device (the same float)."""
        mask = probability > self.threshold
        return Prediction(
            name=loaded.name,
            probability=probability,
            mask=mask,
            score=maximum,
            area_fraction=np.count_nonzero(mask) / mask.size,
            threshold=self.threshold,
            source=loaded.source,
        )


def _source_text(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "filename", None) or None


def _describe(error: Exception, source: Any) -> str:
    where = _source_text(source) or "image"
    if isinstance(error, OdsSamError):  # decoding errors name the file already; size checks do not
        return str(error) if where in str(error) else f"{where}: {error}"
    return f"{where}: {type(error).__name__}: {error}"


def _loaded_count(pending: list[_Loaded | PredictionResult]) -> int:
    return sum(isinstance(item, _Loaded) for item in pending)


def _advance(bar) -> None:
    if bar is not None and hasattr(bar, "update"):
        bar.update(1)
