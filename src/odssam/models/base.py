"""The model seam: what the engine, inference and export know of a segmentation model.

A model maps preprocessed images ``Bx3xSxS`` to mask logits ``Bx1xLxL``. It may hold a
frozen segmenter (:mod:`odssam.models.segmenter`), whose embedding the engine caches, and
it owns everything model-specific the training loop must not name: which weights train
(and go into checkpoints), their optimizer groups, per-epoch hooks and memory layout.
Register a builder in :data:`odssam.models.registry.MODELS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from odssam.models.segmenter import Embedding, FrozenSegmenter
from odssam.models.transforms import PreprocessSpec, postprocess_logits, sam_preprocess

Size = tuple[int, int]
NO_WEIGHT_DECAY_MARK = "_no_weight_decay"  # set on a parameter to keep it out of weight decay


class DensePromptEncoder(nn.Module):
    """The prompt-encoder seam: images ``Bx3xPxP`` -> dense prompt ``BxCxhxw``.

    Subclasses set :attr:`input_size` (``P``) and may override the hooks; register a builder
    in :data:`odssam.models.registry.PROMPT_ENCODERS`.

    Attributes:
        input_size: Side ``P`` of the square input (the segmenter's input resized).
        weights_description: Where the starting weights came from (printed by ``train``).
    """

    input_size: int = 512
    weights_description: str = "random initialisation"

    def set_channels_last(self, enabled: bool = True) -> DensePromptEncoder:
        """Keep 4-D weights (and activations) in channels-last layout; same values."""
        return self

    def start_epoch(self, epoch_index: int, train_cfg: Any) -> dict[str, float]:
        """Called before each 0-based training epoch; returns values to log with the epoch."""
        return {}

    def graph_unsupported_reason(self, train_cfg: Any, device: torch.device) -> str | None:
        """Why a training step (``train_cfg``) or, with ``train_cfg`` ``None``, an inference
        forward of this encoder cannot be one replayed CUDA graph, if it cannot."""
        return None


class SegmentationModel(nn.Module):
    """Base of every model the engine trains, evaluates, predicts with and exports.

    Attributes:
        segmenter: The frozen segmenter, or ``None`` for a model without one (then there is
            nothing to cache and :meth:`encode` returns an empty embedding).
        trainable: The module whose weights train and go into checkpoints.
        preprocess_spec: How images become the ``Bx3xSxS`` input.
        prompt_input_size: Side of what :attr:`trainable` reads (the input resized).
    """

    preprocess_spec: PreprocessSpec
    prompt_input_size: int

    def __init__(self):
        super().__init__()
        # An instance attribute (a class attribute would hide the registered submodule).
        self.segmenter: FrozenSegmenter | None = None

    @property
    def trainable(self) -> nn.Module:
        raise NotImplementedError

    @property
    def image_size(self) -> int:
        """Side ``S`` of the square input (1024 for SAM)."""
        return self.preprocess_spec.image_size

    @property
    def logit_size(self) -> int:
        """Side of the low-resolution logits (256 for SAM)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ what the engine calls

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.trainable.parameters() if p.requires_grad]

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: parameters marked ``_no_weight_decay`` get none, the rest ``weight_decay``."""
        decayed, exempt = [], []
        for parameter in self.trainable_parameters():
            (exempt if getattr(parameter, NO_WEIGHT_DECAY_MARK, False) else decayed).append(parameter)
        groups = [{"params": decayed, "weight_decay": weight_decay}]
        if exempt:
            groups.append({"params": exempt, "weight_decay": 0.0})
        return groups

    def start_epoch(self, epoch_index: int, train_cfg: Any) -> dict[str, float]:
        """Per-epoch hook (0-based index); returns values to log with the epoch."""
        return {}

    def graph_unsupported_reason(self, train_cfg: Any, device: torch.device) -> str | None:
        """A model-specific reason why the training step (``train_cfg``: the run's train section)
        or, with ``train_cfg`` ``None``, the inference forward cannot be a CUDA graph, if any."""
        return None

    def set_channels_last(self, enabled: bool = True) -> SegmentationModel:
        """Memory layout of the trainable part (the engine enables it on CUDA)."""
        return self

    def frozen_fingerprint(self) -> str:
        """Identity of the frozen weights (stored in checkpoints, keys the embedding cache)."""
        return self.segmenter.weights_fingerprint() if self.segmenter is not None else "none"

    def train(self, mode: bool = True) -> SegmentationModel:
        """Switch the trainable part's mode; a frozen segmenter stays in eval mode."""
        super().train(mode)
        if self.segmenter is not None:
            self.segmenter.eval()
        return self

    # ------------------------------------------------------------------ stages

    def preprocess(self, images) -> tuple[torch.Tensor, list[Size], list[Size]]:
        """Images (list of HxWx3 uint8 or a Bx3xHxW tensor) -> ``(x, input_sizes, original_sizes)``.

        ``x`` is Bx3xSxS float32 on the model's device.
        """
        x, input_sizes, original_sizes = sam_preprocess(images, self.preprocess_spec)
        return x.to(self.device), input_sizes, original_sizes

    def encode(self, x: torch.Tensor) -> Embedding:
        """The frozen part's embedding of Bx3xSxS (empty without a segmenter)."""
        return self.segmenter.encode(x) if self.segmenter is not None else ()

    def forward(self, x: torch.Tensor, image_embeddings: Embedding | torch.Tensor | None = None) -> torch.Tensor:
        """Bx3xSxS (or the cached prompt input) -> logits Bx1xLxL."""
        raise NotImplementedError

    def postprocess(
        self, logits: torch.Tensor, input_sizes: Sequence[Size], original_sizes: Sequence[Size]
    ) -> list[torch.Tensor]:
        """Logits Bx1xhxw -> one 1xHxW logit map per image at its original size."""
        return postprocess_logits(logits, input_sizes, original_sizes, self.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.trainable.parameters()).device
