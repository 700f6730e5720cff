"""The one inference path: images -> the model's input on the device -> the model -> probability maps.

Everything that runs a model on images goes through here: the
:class:`~odssam.inference.predictor.Predictor` (``odssam predict``, ``odssam.load``),
evaluation (``odssam eval``, the trainer's validation and final evaluation) and the
embedding-cache builder (which stops after the frozen encoder). Three stages:

1. host, in worker threads or DataLoader workers (:func:`stage_image`): on the CPU the
   whole preprocessing; for a GPU only the HxWx3 uint8 pixels, page-locked (pinned) so
   that the upload does not make the host wait;
2. device (:meth:`BatchInference.prepare`): upload, resize, normalise and pad there
   (:func:`~odssam.models.transforms.sam_preprocess` with the model's preprocess spec);
3. the model under the precision's autocast, then :func:`maps_to_host`: the maps are
   upsampled to each image's size on the device and copied back asynchronously, so a
   caller can queue the next batch before reading this one (:func:`one_in_flight`).
   With ``cuda_graph`` the model's forward (or the encoder) is recorded once as a CUDA
   graph and replayed (:mod:`odssam.inference.graphed_forward`): one launch per batch
   instead of thousands, the same outputs.

:func:`predict_probabilities` is the plain sequential reference (preprocessing on the
CPU); both give the same maps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import torch

from odssam.errors import OdsSamError
from odssam.inference.graphed_forward import GraphedForward

# The one place where inference applies a precision.
from odssam.utils.device import autocast
from odssam.models.transforms import PreprocessSpec, sam_preprocess

Size = tuple[int, int]
Batch = TypeVar("Batch")
Pending = TypeVar("Pending")


class NonFiniteOutput(OdsSamError):
    """The model's probabilities hold NaN or infinite values (NaN/inf weights or input)."""


@dataclass
class HostImage:
    """One image staged on the host for :meth:`BatchInference.prepare`.

    Attributes:
        original_size: ``(H, W)`` of the image.
        pixels: HxWx3 uint8 tensor, preprocessed later on the device (page-locked once
            :meth:`pin_memory` ran); ``None`` when ``x`` is set.
        x: 1x3xSxS float32 input, already preprocessed on the CPU (CPU inference).
        input_size: ``(h, w)`` of the image inside ``x`` (before padding), with ``x``.
    """

    original_size: Size
    pixels: torch.Tensor | None = None
    x: torch.Tensor | None = None
    input_size: Size | None = None

    def pin_memory(self) -> HostImage:
        """Page-lock the pixels; ``DataLoader(pin_memory=True)`` calls this in its pinning thread."""
        if self.pixels is not None and not self.pixels.is_pinned():
            self.pixels = self.pixels.pin_memory()
        return self


@dataclass
class HostBatch:
    """A DataLoader batch staged on the host: the caller's payload and its :class:`HostImage` items."""

    payload: Any
    images: list[HostImage]

    def pin_memory(self) -> HostBatch:
        for image in self.images:
            image.pin_memory()
        return self


def stage_image(image: np.ndarray, spec: PreprocessSpec, device: torch.device, pin: bool = True) -> HostImage:
    """The host's part of preprocessing one HxWx3 uint8 image for ``device``; thread-safe.

    Args:
        image: HxWx3 uint8 RGB array.
        spec: The model's preprocess spec.
        device: Where the model runs: the CPU gets the whole preprocessing here, other
            devices do the resize themselves.
        pin: Page-lock the pixels for a CUDA device now (``False`` in DataLoader worker
            processes, whose pinned memory would not reach the main process).
    """
    problem = spec.size_problem(*image.shape[:2])
    if problem is not None:  # here, so one image cannot fail a whole batch on the device
        raise OdsSamError(problem)
    if device.type == "cpu":
        # The batch path's own function, so results do not depend on where it ran.
        x, input_sizes, original_sizes = sam_preprocess([image], spec)
        return HostImage(original_sizes[0], x=x, input_size=input_sizes[0])
    if not (image.flags.writeable and image.flags.c_contiguous):
        image = np.array(image, order="C")  # torch.from_numpy needs a writable, contiguous array
    staged = HostImage((int(image.shape[0]), int(image.shape[1])), pixels=torch.from_numpy(image))
    return staged.pin_memory() if pin and device.type == "cuda" else staged


@dataclass
class DeviceBatch:
    """The model's input on the device.

    Attributes:
        x: Bx3xSxS float32, normalised and padded.
        input_sizes: ``(h, w)`` of each image inside ``x`` (before padding).
        original_sizes: ``(H, W)`` of each image.
    """

    x: torch.Tensor
    input_sizes: list[Size]
    original_sizes: list[Size]


class PendingMaps:
    """Per-image probability maps on their way to the host; :meth:`wait` hands them over.

    Args:
        maps: One HxW float32 tensor per image (being copied to the host on CUDA).
        done: Event recorded after the copies (CUDA), or ``None``.
        maxima: B float32 tensor of each map's maximum (NaN propagates), computed where the
            maps were (one reduction on the device instead of a host pass per image);
            ``None``: :meth:`wait` checks the maps on the host.
    """

    def __init__(self, maps: list[torch.Tensor], done: torch.cuda.Event | None = None, maxima: torch.Tensor | None = None):
        self._maps = maps
        self._done = done
        self._maxima = maxima

    def wait(self) -> list[np.ndarray]:
        """Wait for the copies (CUDA) and return one HxW float32 array per image, in order.

        Raises:
            NonFiniteOutput: A map holds NaN or infinite values (checked here, on the maxima that
                came with the maps or else on the host copy, so the device is not made to wait):
                every caller (predict, eval, validation) refuses them instead of writing
                ``max_score nan`` or failing in a metric.
        """
        return self.wait_with_maxima()[0]

    def wait_with_maxima(self) -> tuple[list[np.ndarray], list[float]]:
        """:meth:`wait`, plus each map's maximum (the image's score) as a float."""
        if self._done is not None:
            self._done.synchronize()
        maps = [probability.numpy() for probability in self._maps]
        if self._maxima is not None:
            # A probability map's maximum is finite exactly when every value is: sigmoid
            # outputs lie in [0, 1] or are NaN, and the maximum propagates NaN.
            maxima = self._maxima.tolist()
            finite = [np.isfinite(value) for value in maxima]
        else:
            # One pass: a sum is finite exactly when every value is (probabilities are <= 1).
            finite = [np.isfinite(probability.sum(dtype=np.float64)) for probability in maps]
            maxima = None
        for index, is_finite in enumerate(finite):
            if not is_finite:
                raise NonFiniteOutput(
                    f"the model's output holds NaN or infinite values (image {index + 1} of its batch): "
                    "its weights or this input are not finite (a checkpoint of a diverged run?)"
                )
        if maxima is None:
            maxima = [float(probability.max()) for probability in maps]
        return maps, maxima


def maps_to_host(
    model, logits: torch.Tensor, input_sizes: Sequence[Size], original_sizes: Sequence[Size]
) -> PendingMaps:
    """Logits Bx1xhxw -> sigmoid of each image's HxW logit map (``model.postprocess``), bound for the host.

    On CUDA the copies go into page-locked memory without waiting; an event marks their end.
    Each map's maximum is reduced where the maps are and travels with them (B floats).
    """
    maps = model.postprocess(logits.float(), input_sizes, original_sizes)
    on_cuda = logits.device.type == "cuda"
    probabilities = [torch.sigmoid(logit_map[0]) for logit_map in maps]
    maxima = torch.stack([probability.amax() for probability in probabilities]) if probabilities else None
    probabilities = [probability.to("cpu", non_blocking=on_cuda) for probability in probabilities]
    maxima = maxima.to("cpu", non_blocking=on_cuda) if maxima is not None else None
    done = None
    if on_cuda:
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(logits.device))
    return PendingMaps(probabilities, done, maxima)


class BatchInference:
    """A model on one device at one precision: staged images -> input, embedding or probability maps.

    Args:
        model: A :class:`~odssam.models.base.SegmentationModel` on ``device``, in eval mode.
        device: Where it runs (default: the model's device).
        amp_dtype: Autocast dtype (``torch.bfloat16``), or ``None`` for fp32.
        cuda_graph: On a CUDA device, run :meth:`encode` and the image-input path of
            :meth:`probabilities` as CUDA graphs (:class:`~odssam.inference.graphed_forward.GraphedForward`:
            a few eager batches, then one capture of the full batch's shape, replayed; other
            shapes and a forward that cannot be captured run eagerly; a model whose
            ``graph_unsupported_reason(None, device)`` gives a reason, e.g. the chunked scan,
            keeps an eager forward, :attr:`eager_reason` says why). The graphs live as
            long as this object: keep one for many batches. No effect on the CPU.

    Example::

        inference = BatchInference(model, amp_dtype=torch.bfloat16)
        pending = inference.launch([inference.stage(image) for image in images])
        ...                                  # queue more work; the GPU runs meanwhile
        probabilities = pending.wait()       # HxW float32 arrays
    """

    def __init__(
        self, model, device: torch.device | None = None, amp_dtype: torch.dtype | None = None, cuda_graph: bool = False
    ):
        self.model = model
        self.device = torch.device(device) if device is not None else model.device
        self.amp_dtype = amp_dtype
        self.graphed_encode: GraphedForward | None = None
        self.graphed_forward: GraphedForward | None = None
        self.eager_reason: str | None = None  # why the forward is not graphed although asked for
        if cuda_graph and self.device.type == "cuda":
            # Functions of the model alone (no reference back to this object): the graphs'
            # memory is freed as soon as this object is, without waiting for the garbage collector.
            if getattr(model, "segmenter", None) is not None:  # else there is nothing to encode
                self.graphed_encode = GraphedForward(
                    partial(_encode_for_graph, model, self.device, amp_dtype), "image encoder"
                )
            # A model that says up front that its forward reads values on the host (the
            # chunked scan) is not tried: the capture would fail after recording half of it.
            reason = getattr(model, "graph_unsupported_reason", lambda *_: None)(None, self.device)
            self.eager_reason = reason
            if reason is None:
                self.graphed_forward = GraphedForward(
                    partial(_forward_for_graph, model, self.device, amp_dtype), "model forward"
                )

    @property
    def spec(self) -> PreprocessSpec:
        return self.model.preprocess_spec

    def stage(self, image: np.ndarray, pin: bool = True) -> HostImage:
        """:func:`stage_image` for this model and device."""
        return stage_image(image, self.spec, self.device, pin)

    def prepare(self, staged: Sequence[HostImage], spec: PreprocessSpec | None = None) -> DeviceBatch:
        """Staged images -> :class:`DeviceBatch`; uploads from page-locked memory do not wait.

        Args:
            staged: Images from :meth:`stage` (or :func:`stage_image` with ``spec``).
            spec: Preprocessing of the pixels (default: the model's).
        """
        original_sizes = [image.original_size for image in staged]
        if all(image.x is not None for image in staged):
            x = torch.cat([image.x for image in staged]).to(self.device, non_blocking=True)
            return DeviceBatch(x, [image.input_size for image in staged], original_sizes)
        x, input_sizes, _ = sam_preprocess([image.pixels for image in staged], spec or self.spec, device=self.device)
        return DeviceBatch(x, input_sizes, original_sizes)

    # no_grad, not inference_mode: tensors cached by the model during a call (e.g. the
    # OD-SSM scan orders) must stay usable by a later training step in the same process.
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The frozen part's embedding parts of Bx3xSxS (e.g. Bx256x64x64), under autocast."""
        if self.graphed_encode is not None:
            return self.graphed_encode(x)
        with autocast(self.device, self.amp_dtype):
            return tuple(self.model.encode(x))

    @torch.no_grad()
    def probabilities(
        self,
        x: torch.Tensor,
        input_sizes: Sequence[Size],
        original_sizes: Sequence[Size],
        image_embeddings: tuple[torch.Tensor, ...] | None = None,
    ) -> PendingMaps:
        """Model input Bx3xSxS (or the cached prompt input with its embedding) -> probability maps."""
        if image_embeddings is None and self.graphed_forward is not None:
            logits = self.graphed_forward(x)
        else:
            with autocast(self.device, self.amp_dtype):
                logits = self.model(x) if image_embeddings is None else self.model(x, image_embeddings=image_embeddings)
        return maps_to_host(self.model, logits, input_sizes, original_sizes)

    def launch(self, staged: Sequence[HostImage]) -> PendingMaps:
        """Queue staged images on the device; nothing here waits for a GPU."""
        if not staged:
            return PendingMaps([])
        batch = self.prepare(staged)
        return self.probabilities(batch.x, batch.input_sizes, batch.original_sizes)


# The functions recorded as CUDA graphs: autocast must not cache casts across calls (the
# casts are then recorded in the graph too). no_grad here as well as in the callers, so a
# graph never records autograd state.
@torch.no_grad()
def _encode_for_graph(
    model, device: torch.device, amp_dtype: torch.dtype | None, x: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Bx3xSxS -> the frozen encoder's embedding parts (e.g. Bx256x64x64)."""
    with autocast(device, amp_dtype, cache_enabled=False):
        return tuple(model.encode(x))


@torch.no_grad()
def _forward_for_graph(model, device: torch.device, amp_dtype: torch.dtype | None, x: torch.Tensor) -> torch.Tensor:
    """Bx3xSxS -> logits Bx1x(S/4)x(S/4)."""
    with autocast(device, amp_dtype, cache_enabled=False):
        return model(x)


def one_in_flight(
    batches: Iterable[Batch],
    launch: Callable[[Batch], Pending],
    collect: Callable[[Pending], Any] = PendingMaps.wait,
) -> Iterator[tuple[Batch, Any]]:
    """Launch each batch, then hand over the previous one's outputs: the device computes one
    batch while the caller consumes the last (and its loader prepares the next).

    Args:
        batches: The batches, consumed lazily.
        launch: Queues one batch on the device and returns its pending outputs.
        collect: Waits for pending outputs and returns them (default :meth:`PendingMaps.wait`).

    Yields:
        ``(batch, collect(launch(batch)))`` in order.
    """
    in_flight = None
    for batch in batches:
        launched = (batch, launch(batch))
        if in_flight is not None:
            yield in_flight[0], collect(in_flight[1])
        in_flight = launched
    if in_flight is not None:
        yield in_flight[0], collect(in_flight[1])


def predict_probabilities(model, images, amp_dtype: torch.dtype | None = None) -> list[np.ndarray]:
    """The plain, sequential reference: preprocess on the CPU, run, wait for the maps.

    Args:
        model: A :class:`~odssam.models.base.SegmentationModel` (eval mode).
        images: A list of HxWx3 uint8 arrays (sizes may differ) or a Bx3xHxW tensor.
        amp_dtype: Autocast dtype, or ``None`` for fp32.

    Returns:
        One HxW float32 probability map per image, at its own size.
    """
    if not isinstance(images, (torch.Tensor, np.ndarray)):
        images = list(images)
    x, input_sizes, original_sizes = model.preprocess(images)
    return BatchInference(model, x.device, amp_dtype).probabilities(x, input_sizes, original_sizes).wait()
