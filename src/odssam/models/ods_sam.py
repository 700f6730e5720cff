"""ODS-SAM: a frozen segmenter driven by the learned dense prompt (paper Figure 1).

Dataflow (DESIGN.md section 1)::

    image (uint8, any size) --preprocess--> x: Bx3x1024x1024 (normalised, padded)
    x --frozen image encoder-->                          E: (Bx256x64x64, ...)
    x --bilinear to 512--> prompt encoder (trainable) --> P: Bx256x64x64
    frozen mask decoder(E, dense=P)                   --> logits Bx1x256x256

The frozen segmenter is SAM (paper) or SAM 2 (:mod:`odssam.models.segmenter`); only the
prompt encoder has trainable parameters. ``encode`` and ``decode`` are split so a cached
embedding can be reused (training with an embedding cache).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from odssam.models.base import SegmentationModel
from odssam.models.registry import build_prompt_network, build_segmenter
from odssam.models.segmenter import Embedding, FrozenSegmenter


class OdsSam(SegmentationModel):
    """Frozen segmenter + learned prompt encoder.

    Args:
        segmenter: A :class:`~odssam.models.segmenter.FrozenSegmenter` (SAM, SAM 2).
        prompt_encoder: Maps Bx3xPxP (P = ``prompt_input_size``) to the dense prompt
            Bx256xhxw, where hxw is the segmenter's prompt grid.
        prompt_input_size: Side of the resized input fed to the prompt encoder.
    """

    def __init__(self, segmenter: FrozenSegmenter, prompt_encoder: nn.Module, prompt_input_size: int = 512):
        super().__init__()
        self.segmenter = segmenter.freeze()
        self.prompt_encoder = prompt_encoder
        self.prompt_input_size = prompt_input_size
        self.preprocess_spec = segmenter.preprocess_spec

    @property
    def trainable(self) -> nn.Module:
        return self.prompt_encoder

    @property
    def embedding_size(self) -> int:
        """Side of the segmenter's prompt grid (64 for the official models)."""
        return self.segmenter.embedding_size

    @property
    def logit_size(self) -> int:
        """Side of the mask decoder's low-resolution logits (256 for the official models)."""
        return self.segmenter.logit_size

    # ------------------------------------------------------------------ model-owned hooks

    def start_epoch(self, epoch_index: int, train_cfg: Any) -> dict[str, float]:
        return self.prompt_encoder.start_epoch(epoch_index, train_cfg)

    def graph_unsupported_reason(self, train_cfg: Any, device: torch.device) -> str | None:
        return self.prompt_encoder.graph_unsupported_reason(train_cfg, device)

    def set_channels_last(self, enabled: bool = True) -> OdsSam:
        self.prompt_encoder.set_channels_last(enabled)
        return self

    # ------------------------------------------------------------------ stages

    def prompt(self, x: torch.Tensor) -> torch.Tensor:
        """Learned dense prompt: Bx3xSxS -> Bx256xhxw (the segmenter's prompt grid)."""
        if x.shape[-1] != self.prompt_input_size:
            x = F.interpolate(
                x, size=(self.prompt_input_size, self.prompt_input_size), mode="bilinear", align_corners=False
            )
        prompt = self.prompt_encoder(x)
        if prompt.shape[-1] != self.embedding_size:
            # A prompt input size other than half of the segmenter's input gives another grid.
            size = (self.embedding_size, self.embedding_size)
            prompt = F.interpolate(prompt, size=size, mode="bilinear", align_corners=False)
        return prompt

    def decode(self, image_embeddings: Embedding | torch.Tensor, dense_prompt: torch.Tensor) -> torch.Tensor:
        """The frozen mask decoder with a dense prompt: embedding parts + Bx256xhxw -> logits Bx1x(4h)x(4w)."""
        return self.segmenter.decode(_as_embedding(image_embeddings), dense_prompt)

    def forward(self, x: torch.Tensor, image_embeddings: Embedding | torch.Tensor | None = None) -> torch.Tensor:
        """Preprocessed images Bx3xSxS -> logits Bx1x(S/4)x(S/4).

        Args:
            x: Output of :meth:`preprocess` (or the cached prompt input).
            image_embeddings: Optional cached embedding of ``x`` (skips the encoder).
        """
        if image_embeddings is None:
            image_embeddings = self.encode(x)
        return self.decode(image_embeddings, self.prompt(x))


def _as_embedding(embedding: Embedding | torch.Tensor) -> Embedding:
    return (embedding,) if isinstance(embedding, torch.Tensor) else tuple(embedding)


def build_ods_sam(cfg=None, checkpoint: str | None = None, *, feature_encoder_weights: bool = True) -> OdsSam:
    """Build ODS-SAM from a :class:`~odssam.config.ModelConfig` (defaults: ViT-H + the paper's prompt encoder).

    Args:
        cfg: Model configuration.
        checkpoint: Overrides ``cfg.sam.checkpoint`` (a path, ``"auto"`` or ``None``).
        feature_encoder_weights: Load the feature encoder's starting weights
            (``cfg.prompt_encoder.feature_encoder.checkpoint``). Pass ``False`` when the prompt
            encoder's weights will come from a trained odssam checkpoint, which must load
            without the original file.
    """
    from odssam.config import ModelConfig

    cfg = cfg or ModelConfig()
    segmenter = build_segmenter(cfg.sam, checkpoint)
    prompt_encoder = build_prompt_network(cfg.prompt_encoder, load_weights=feature_encoder_weights)
    return OdsSam(segmenter, prompt_encoder, prompt_input_size=cfg.prompt_encoder.input_size)
