"""``sam_noprompt``: the frozen segmenter's decoder with one learned dense embedding, the same for every image.

The cheapest automatic prompt. The embedding (256 x S/8 x S/8, ``S`` =
``model.prompt_encoder.input_size``: 256x64x64) *replaces* the segmenter's no-mask
embedding and starts as a copy of it, broadcast over the grid, so training starts from
SAM's own prediction without a prompt. (This is not Table 4's first row, which keeps a basic
EfficientViT prompt encoder.)
"""

from __future__ import annotations

import torch
from torch import nn

from odssam.config import PromptEncoderConfig
from odssam.errors import OdsSamError
from odssam.models.base import DensePromptEncoder
from odssam.models.baselines import PROMPT_CHANNELS, build_frozen_segmenter_model
from odssam.models.segmenter import FrozenSegmenter

NO_MASK_MODULE = "no_mask_embed"  # the name SAM's and SAM 2's prompt encoders give it


class NoPromptEncoder(DensePromptEncoder):
    """A learned dense prompt that ignores the image: Bx3xSxS -> Bx256xS/8xS/8 (one embedding, repeated).

    Args:
        cfg: Prompt encoder settings; only ``input_size`` (S) is read.
    """

    weights_description = "the segmenter's no-mask embedding"

    def __init__(self, cfg: PromptEncoderConfig):
        super().__init__()
        self.input_size = cfg.input_size
        grid = cfg.input_size // 8
        self.embedding = nn.Parameter(torch.zeros(1, PROMPT_CHANNELS, grid, grid))

    @torch.no_grad()
    def start_from(self, no_mask_embedding: torch.Tensor) -> NoPromptEncoder:
        """Set every grid cell to ``no_mask_embedding`` (256 values: SAM's learned no-mask vector)."""
        self.embedding.copy_(no_mask_embedding.reshape(1, PROMPT_CHANNELS, 1, 1).expand_as(self.embedding))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Only ``x``'s batch size is read: Bx3xSxS -> Bx256xS/8xS/8."""
        # A copy, not an expanded view: a view of a parameter made under no_grad still
        # claims to require a gradient (and has no graph), which FLOP counting refuses.
        return self.embedding.repeat(x.shape[0], 1, 1, 1)


def no_mask_embedding(segmenter: FrozenSegmenter) -> torch.Tensor:
    """The segmenter's no-mask prompt vector (256 values), found by its module name."""
    for name, module in segmenter.named_modules():
        if name.split(".")[-1] == NO_MASK_MODULE:
            return module.weight.detach()
    raise OdsSamError(
        f"model.name sam_noprompt: the segmenter '{segmenter.variant}' has no '{NO_MASK_MODULE}' "
        "embedding to start from"
    )


def build_noprompt_encoder(cfg: PromptEncoderConfig, load_weights: bool = False) -> NoPromptEncoder:
    """The registered builder (``model.prompt_encoder.name: noprompt``).

    The embedding is zero until :meth:`NoPromptEncoder.start_from` copies the segmenter's
    no-mask embedding in (:func:`build_sam_noprompt` does); ``load_weights`` has nothing to load.
    """
    return NoPromptEncoder(cfg)


def build_sam_noprompt(cfg=None, checkpoint: str | None = None, *, feature_encoder_weights: bool = True):
    """``model.name: sam_noprompt``: the frozen segmenter with a learned embedding that starts at its no-mask one."""
    model = build_frozen_segmenter_model(cfg, "noprompt", checkpoint, feature_encoder_weights)
    model.prompt_encoder.start_from(no_mask_embedding(model.segmenter))
    return model
