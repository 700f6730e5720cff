"""A training step recorded once as a CUDA graph and replayed for every later batch.

With cached SAM embeddings a step of the prompt encoder launches a few thousand small
kernels (EfficientViT's convolutions, norms and activations, forward and backward, and
Adam). Issuing them from Python takes longer than the GPU needs to run them, so the GPU
waits. A CUDA graph records the whole step (forward, loss, backward, optimizer) once and
then launches it with one call: on an H100 the cached ViT-H step at batch 10 went from
86-105 ms to 65 ms (BENCHMARKS.md, target 3).

The step must then have fixed shapes and no host decisions: batches are copied into static
input tensors, the learning rate must stay constant and the model must not change between
steps (the model says when it does, e.g. an annealed ODConv temperature: see
:func:`graph_unsupported_reason`). Host-side values the step bakes in (the per-image sizes
of a label-resolution loss) are passed as ``layout``. A batch of another size or layout
(the last, partial one) runs eagerly with the same model and optimizer. Under DDP the gradient all-reduce (NCCL) is
part of the graph.

A step that cannot be captured (an operation that needs the host, a library that does not
support capture) never stops training: the capture is tried once, and on failure the step
runs eagerly from then on, with one line saying why.

Warm-up, capture and the DDP wrapper all use one side stream (:attr:`GraphedStep.stream`):
autograd's gradient-accumulation nodes remember the stream they were created on, and a
mismatch costs synchronisation and a warning in every step.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

from odssam.config import ExperimentConfig

WARMUP_STEPS = 3
DDP_WARMUP_STEPS = 11  # DistributedDataParallel settles its buckets in the first iterations


def warmup_steps(world_size: int) -> int:
    """Eager steps before the capture."""
    return DDP_WARMUP_STEPS if world_size > 1 else WARMUP_STEPS


def graph_unsupported_reason(
    cfg: ExperimentConfig, device: torch.device, world_size: int, cached: bool, model_reason: str | None
) -> str | None:
    """Why the training step cannot be a CUDA graph here, or ``None`` when it can.

    Args:
        cfg: The experiment.
        device: Where the step runs.
        world_size: Processes of the run.
        cached: Whether the step reads cached embeddings (else SAM's encoder runs in it).
        model_reason: The model's own reason (``model.graph_unsupported_reason(cfg.train,
            device)``: e.g. an annealed ODConv temperature, a scan that plans on the host);
            the engine checks only what the loop itself decides.
    """
    from odssam.engine.targets import loss_resolution

    tcfg = cfg.train
    label_sizes_vary = loss_resolution(tcfg) == "label" and cfg.data.image_size is None
    reasons = [
        (device.type != "cuda", "it runs on the CPU"),
        (not cached, "images are decoded for every step (no embedding cache, augmentation, or no frozen segmenter)"),
        (tcfg.lr_schedule != "constant", f"the learning rate changes ({tcfg.lr_schedule} schedule)"),
        (model_reason is not None, model_reason),
        (tcfg.compile, "train.compile is on"),
        (label_sizes_vary, "the label-resolution loss crops and resizes to each image's own size "
         "(set data.image_size to make the sizes fixed)"),
        (tcfg.max_steps is not None and tcfg.max_steps <= warmup_steps(world_size), "the run is too short to pay off"),
    ]
    return next((reason for condition, reason in reasons if condition), None)


class GraphedStep:
    """Run ``step(*inputs)`` eagerly for a few batches, then as a replayed CUDA graph.

    Args:
        step: One whole training step (forward, loss, ``zero_grad(set_to_none=True)``,
            backward, optimizer step) on CUDA tensors; returns the loss. Autocast inside it
            must run with ``cache_enabled=False``, and the optimizer must be capturable.
            Under DDP (NCCL) the gradient all-reduce is captured too; the DDP module must
            have been built on ``stream`` (``with torch.cuda.stream(stream)``) with
            ``static_graph``.
        warmup: Eager steps before the capture (:func:`warmup_steps`).
        stream: The side stream of warm-up, capture and eager steps (default: a new one).
        say: Where the one line about a failed capture goes.

    Calling the object with a batch (tensors, any device) returns that batch's loss, a
    0-dim CUDA tensor that stays valid until the next call. ``layout`` (hashable, optional):
    host-side values that shape the step besides the tensors (e.g. per-image sizes); it is
    passed on to ``step`` as ``layout=``, and the graph replays only batches with the
    layout it was captured with.
    """

    def __init__(
        self,
        step: Callable[..., torch.Tensor],
        warmup: int = WARMUP_STEPS,
        stream: torch.cuda.Stream | None = None,
        say: Callable[[str], None] = print,
    ):
        self.step = step
        self.warmup = warmup
        self.say = say
        self.stream = stream if stream is not None else torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: tuple[torch.Tensor, ...] = ()
        self.static_loss: torch.Tensor | None = None
        self.static_layout: Hashable = None
        self.eager_steps = 0
        self.capture_failure: str | None = None

    def __call__(self, *batch: torch.Tensor, layout: Hashable = None) -> torch.Tensor:
        if self.graph is not None and self._fits(batch, layout):
            for static, value in zip(self.static_inputs, batch):
                static.copy_(value, non_blocking=True)
            self.graph.replay()
            return self.static_loss
        if self.graph is not None or self.capture_failure is not None or self.eager_steps < self.warmup:
            return self._eager(batch, layout)
        if not self._capture(batch, layout):
            return self._eager(batch, layout)
        self.graph.replay()  # capturing records the step without running it
        return self.static_loss

    def _fits(self, batch: tuple[torch.Tensor, ...], layout: Hashable) -> bool:
        same_shapes = all(static.shape == value.shape for static, value in zip(self.static_inputs, batch))
        return same_shapes and layout == self.static_layout

    def _run(self, inputs, layout: Hashable) -> torch.Tensor:
        return self.step(*inputs) if layout is None else self.step(*inputs, layout=layout)

    def _eager(self, batch: tuple[torch.Tensor, ...], layout: Hashable) -> torch.Tensor:
        device = torch.device("cuda", torch.cuda.current_device())
        inputs = [value.to(device, non_blocking=True) for value in batch]
        # Before the capture, warm-up runs on the capture's side stream, as CUDA graph
        # capture requires (lazy library initialisation and allocator state must not land
        # inside the graph); after it, on the same stream as the replays.
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            loss = self._run(inputs, layout).detach()  # keeps no autograd graph alive
        torch.cuda.current_stream().wait_stream(self.stream)
        self.eager_steps += 1
        return loss

    def _capture(self, batch: tuple[torch.Tensor, ...], layout: Hashable) -> bool:
        """Record the step; ``False`` (and one line saying why) when it cannot be captured."""
        device = torch.device("cuda", torch.cuda.current_device())
        self.static_inputs = tuple(value.to(device, non_blocking=True).clone() for value in batch)
        self.static_layout = layout
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: the DataLoader's pin-memory thread keeps using CUDA meanwhile.
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                static_loss = self._run(self.static_inputs, layout).detach()
        except Exception as error:  # noqa: BLE001 - any capture failure means: stay eager
            torch.cuda.synchronize()
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.capture_failure = reason
            self.static_inputs = ()
            self.say(f"training step: eager (the step could not be recorded as a CUDA graph: {reason})")
            return False
        self.graph, self.static_loss = graph, static_loss
        return True
