"""A model's forward recorded once as a CUDA graph and replayed for every later batch of its shape.

A ViT-H SAM forward with the prompt encoder launches a few thousand kernels per batch; on
an H200 issuing them from Python took about as long as the GPU needed to run them
(predict, batch 8, bf16: ~31,000 launches per 96 images, 1.27 s of host time against
1.43 s of GPU time), and threads writing results compete with the launching thread for
the GIL. A CUDA graph launches the whole forward with one call.

:class:`GraphedForward` wraps a function of one input tensor (e.g. Bx3xSxS images ->
Bx1x(S/4)x(S/4) logits, or -> SAM's embedding parts). The first calls of a shape run
eagerly (warm-up: Triton autotuning, cuDNN algorithm selection, lazy allocations); then the
function is captured once and replayed: the input is copied into a static tensor, the
graph is replayed on the current stream and clones of the static outputs are returned, so
a caller may keep them while the next batch is queued (:func:`~odssam.inference.batch.one_in_flight`
launches batch N+1 before batch N is read). One shape is captured (the first one called
more than ``warmup`` times: the full batch); any other (a last, partial batch) runs eagerly.

A function that cannot be captured (an operation that reads a tensor on the host) never
stops inference: the capture is tried once, and on failure the function runs eagerly from
then on, with one line saying why. Models that know it up front (the chunked selective scan
plans its chunks on the host) are not wrapped at all (:class:`~odssam.inference.batch.BatchInference`).
On the CPU the wrapper is a plain call.

The function must be capturable apart from that: autocast inside it with
``cache_enabled=False`` (:func:`odssam.utils.device.autocast`), and no state that changes
between calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Union

import torch

WARMUP_CALLS = 2  # eager calls of a shape before its capture (the first one selects kernels)

Outputs = Union[torch.Tensor, tuple[torch.Tensor, ...]]
Signature = tuple  # (shape, stride, dtype, device) of an input


def _default_say(message: str) -> None:
    logging.getLogger("odssam").warning(message)


def _signature(x: torch.Tensor) -> Signature:
    # The stride too: a graph replays the kernels of the layout it was captured with.
    return tuple(x.shape), x.stride(), x.dtype, x.device


def _clone(outputs: Outputs) -> Outputs:
    if isinstance(outputs, torch.Tensor):
        return outputs.clone()
    return tuple(output.clone() for output in outputs)


def _check_outputs(outputs) -> Outputs:
    if isinstance(outputs, torch.Tensor):
        return outputs
    outputs = tuple(outputs)
    if not all(isinstance(output, torch.Tensor) for output in outputs):
        kinds = [type(output).__name__ for output in outputs]
        raise TypeError(f"a graphed forward must return a tensor or a tuple of tensors, got {kinds}")
    return outputs


class GraphedForward:
    """Run ``function(x)`` eagerly for a few calls, then as a replayed CUDA graph.

    Args:
        function: Input tensor (e.g. Bx3xSxS float32 on a CUDA device) -> a tensor or a
            tuple of tensors; capturable (autocast with ``cache_enabled=False``, no host
            reads of device values) or else it stays eager.
        name: What it computes, for the line about a failed capture (e.g. ``"model forward"``).
        warmup: Eager calls of the captured shape before its capture.
        say: Where the one line about a failed capture goes (default: the ``odssam``
            logger, as a warning).

    Calling the object returns ``function(x)``: fresh tensors in every case (clones of
    the graph's static outputs after the capture), which stay valid after later calls.
    Calls from several threads take turns (they would share the static tensors).

    Attributes:
        graph: The captured graph, or ``None``.
        capture_failure: Why the capture failed (then every call is eager), or ``None``.
        eager_calls: Calls that ran ``function`` directly on CUDA tensors.
        replays: Calls answered by replaying the graph.
    """

    def __init__(
        self,
        function: Callable[[torch.Tensor], Outputs],
        name: str = "forward",
        warmup: int = WARMUP_CALLS,
        say: Callable[[str], None] | None = None,
    ):
        self.function = function
        self.name = name
        self.warmup = max(1, int(warmup))  # at least one eager call on the capture stream
        self.say = say if say is not None else _default_say
        self.stream: torch.cuda.Stream | None = None  # the warm-up and capture stream, made on first use
        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_failure: str | None = None
        self.static_input: torch.Tensor | None = None
        self.static_outputs: Outputs | None = None
        self.static_signature: Signature | None = None
        self.eager_calls = 0
        self.replays = 0
        self._warm: dict[Signature, int] = {}  # eager warm-up calls per input signature
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> Outputs:
        if x.device.type != "cuda":
            return _check_outputs(self.function(x))
        # The graph replays on the current stream of the current device: make that x's device.
        with self._lock, torch.cuda.device(x.device):
            return self._call_on_cuda(x)

    def _call_on_cuda(self, x: torch.Tensor) -> Outputs:
        signature = _signature(x)
        if self.graph is not None and signature == self.static_signature:
            return self._replay(x)
        if self.graph is not None or self.capture_failure is not None:
            return self._eager(x)  # another shape (a partial batch), or nothing can be captured
        if self._warm.get(signature, 0) < self.warmup:
            return self._warm_up(x, signature)
        if not self._capture(x, signature):
            return self._eager(x)
        # Capturing records the kernels without running them: the first replay computes x's outputs.
        self.replays += 1
        self.graph.replay()
        return _clone(self.static_outputs)

    def _replay(self, x: torch.Tensor) -> Outputs:
        # Everything is on the current stream: the copy, the replay, then the clones (so the
        # next call's copy into the static input cannot overtake this call's reads).
        self.static_input.copy_(x, non_blocking=True)
        self.graph.replay()
        self.replays += 1
        return _clone(self.static_outputs)

    def _eager(self, x: torch.Tensor) -> Outputs:
        self.eager_calls += 1
        return _check_outputs(self.function(x))

    def _warm_up(self, x: torch.Tensor, signature: Signature) -> Outputs:
        """An eager call on the capture's side stream, as CUDA graph capture requires: lazy
        library initialisation (cuBLAS workspaces, cuDNN plans of that stream, Triton
        autotuning) must happen before the capture, not inside it."""
        if self.stream is None:
            self.stream = torch.cuda.Stream(x.device)
        current = torch.cuda.current_stream(x.device)
        # Both ways: the side stream sees x, and later work on the current stream (reads of
        # the outputs, reuse of x's memory) waits for the side stream. Every allocation on
        # the side stream follows the first wait, so freed blocks are reused safely.
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            outputs = _check_outputs(self.function(x))
        current.wait_stream(self.stream)
        self._warm[signature] = self._warm.get(signature, 0) + 1
        self.eager_calls += 1
        return outputs

    def _capture(self, x: torch.Tensor, signature: Signature) -> bool:
        """Record ``function`` on a static copy of ``x``; ``False`` (and one line saying why) when it cannot be."""
        self.static_input = x.clone()  # keeps x's layout: the kernels are those of its shape and strides
        graph = torch.cuda.CUDAGraph()
        try:
            # torch.cuda.graph synchronizes the device first (the clone above is then ready).
            # thread_local: other threads (image decoding, page-locking, DataLoader pinning)
            # keep using CUDA meanwhile.
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                static_outputs = _check_outputs(self.function(self.static_input))
        except Exception as error:  # noqa: BLE001 - any capture failure means: stay eager
            torch.cuda.synchronize(x.device)
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.capture_failure = reason
            self.static_input = None
            self._warm.clear()
            self.say(f"{self.name}: eager (it could not be recorded as a CUDA graph: {reason})")
            return False
        self.graph, self.static_outputs, self.static_signature = graph, static_outputs, signature
        self._warm.clear()
        return True
