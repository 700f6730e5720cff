"""One optimizer step: forward, loss, backward and update of one batch, eager or as a CUDA graph.

:class:`TrainingStep` is the step on tensors already on the device; :class:`BatchStep`
takes a loader batch, and either moves it and runs the step or hands it to a
:class:`~odssam.engine.graphed_step.GraphedStep`. :func:`build_batch_step` wires them
(with the DistributedDataParallel wrapper under ``torchrun``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from odssam.engine.cache import embedding_from_batch
from odssam.engine.distributed import DistInfo
from odssam.engine.graphed_step import GraphedStep, warmup_steps
from odssam.utils.device import autocast
from odssam.engine.targets import Layout, TrainingLoss, batch_layout


@dataclass
class TrainingStep:
    """Forward, loss, backward and optimizer step on one batch already on the device.

    Attributes:
        model: The model, or its DistributedDataParallel wrapper.
        optimizer: Steps the trainable parameters.
        loss: The training loss at the configured resolution.
        device: Where the step runs.
        amp_dtype: Autocast dtype (``None``: fp32).
        cached: Inputs are ``(prompt input Bx3xPxP, *embedding parts)`` from the cache
            (else one preprocessed image batch Bx3xSxS).
        graphed: The step is recorded as a CUDA graph (autocast's weight cache must be off).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss: TrainingLoss
    device: torch.device
    amp_dtype: torch.dtype | None
    cached: bool
    graphed: bool

    def __call__(self, target: torch.Tensor, *inputs: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        """Targets Bx1xTxT and inputs -> the batch's loss (0-dim). ``layout``: see :func:`batch_layout`."""
        with autocast(self.device, self.amp_dtype, cache_enabled=not self.graphed):
            if self.cached:
                # Copied in their stored 16-bit form, widened on the device.
                prompt_input, *embedding = (tensor.float() for tensor in inputs)
                logits = self.model(prompt_input, image_embeddings=tuple(embedding))
            else:
                logits = self.model(inputs[0])
        loss = self.loss(logits, target, layout)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss


@dataclass
class BatchStep:
    """One training step on a loader batch: replayed from a CUDA graph when ``graphed`` is set."""

    step: TrainingStep
    graphed: GraphedStep | None = None

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A collated batch (cached or decoded items, on the host) -> its loss, a 0-dim device tensor."""
        target = batch["target"]
        inputs = (batch["prompt_input"], *embedding_from_batch(batch)) if self.step.cached else (batch["x"],)
        layout = batch_layout(batch)
        if self.graphed is not None:
            return self.graphed(target, *inputs, layout=layout)
        device = self.step.device
        return self.step(*(t.to(device, non_blocking=True) for t in (target, *inputs)), layout=layout)


def wrap_distributed(model: nn.Module, info: DistInfo, stream: torch.cuda.Stream | None) -> nn.Module:
    """``model`` in DistributedDataParallel under ``torchrun``, else ``model`` itself.

    Built on ``stream`` (the CUDA graph's side stream) when given, so the step, all-reduce
    included, can be captured.
    """
    if not info.is_distributed:
        return model
    # Depthwise kernels (Cx1xkxk) get gradients whose stride along the size-1 dim differs
    # from the weight's: the same memory layout, but DDP warns about it once per process.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    # BatchNorm buffers are made equal once per epoch (broadcast_buffers in the epoch), not
    # by a broadcast before every forward; the graph is the same every step.
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        return DistributedDataParallel(
            model, device_ids=device_ids, gradient_as_bucket_view=True, broadcast_buffers=False, static_graph=True
        )


def build_batch_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: TrainingLoss,
    info: DistInfo,
    amp_dtype: torch.dtype | None,
    *,
    cached: bool,
    graphed: bool,
    say: Callable[[str], None] = print,
) -> BatchStep:
    """The step of a run: DDP-wrapped under ``torchrun``, recorded as a CUDA graph when ``graphed``."""
    capture_stream = torch.cuda.Stream(info.device) if graphed else None
    train_model = wrap_distributed(model, info, capture_stream)
    step = TrainingStep(train_model, optimizer, loss, info.device, amp_dtype, cached=cached, graphed=graphed)
    if not graphed:
        return BatchStep(step)
    return BatchStep(step, GraphedStep(step, warmup_steps(info.world_size), capture_stream, say))
