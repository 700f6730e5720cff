"""Profiling through the frozen-segmenter seam: any segmenter's components, FLOPs by component."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from helpers import tiny_model_config
from torch import nn

from odssam.models.profiling import profile_model, profile_segmenter, segmenter_components
from odssam.models.registry import build_segmenter
from odssam.models.segmenter import Embedding, FrozenSegmenter
from odssam.models.shape_only import shape_only
from odssam.models.transforms import PreprocessSpec


class ToySegmenter(FrozenSegmenter):
    """Two embedding parts (1x256x4x4 grid, 1x8x16x16 detail) from a 64x64 input; a 1x1 head decodes.

    ``mix`` (a parameter of the segmenter itself) projects the detail map outside any module.
    """

    def __init__(self):
        super().__init__()
        self.preprocess_spec = PreprocessSpec(64, resize="stretch")
        self.encoder = nn.Conv2d(3, 256, kernel_size=16, stride=16)
        self.detail = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        self.head = nn.Conv2d(256, 1, kernel_size=1)
        self.mix = nn.Parameter(torch.zeros(8, 1))
        self.freeze()

    @property
    def image_encoder(self) -> nn.Module:
        return self.encoder

    def embedding_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((256, 4, 4), (8, 16, 16))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Embedding:
        return self.encoder(x), self.detail(x)

    def decode(self, embedding: Embedding, dense_prompt: torch.Tensor) -> torch.Tensor:
        grid, detail = embedding
        logits = F.interpolate(self.head(grid + dense_prompt), scale_factor=4.0)
        mixed = detail.flatten(2).transpose(1, 2) @ self.mix  # 1x256x8 @ 8x1
        return logits + mixed.transpose(1, 2).reshape(logits.shape)


def test_any_segmenter_profiles_by_component():
    with shape_only():
        parts = profile_segmenter(ToySegmenter())
    # FLOPs = 2 x MACs: output elements x (input channels x kernel area).
    assert [(p.name, p.params, p.flops) for p in parts] == [
        ("encoder", 256 * 3 * 16 * 16 + 256, 2 * (256 * 4 * 4) * (3 * 16 * 16)),
        ("detail", 8 * 3 * 4 * 4 + 8, 2 * (8 * 16 * 16) * (3 * 4 * 4)),
        ("head", 256 + 1, 2 * (4 * 4) * 256),
        ("outside the components", 0, 2 * 256 * 8),
        ("segmenter (own parameters)", 8, 0),
    ]
    assert not any(p.trainable for p in parts)


def test_sam_components_are_found_below_the_wrapper():
    with shape_only():
        segmenter = build_segmenter(tiny_model_config().sam)
        path, children = segmenter_components(segmenter)
    assert path == "sam" and list(children) == ["image_encoder", "prompt_encoder", "mask_decoder"]


def test_sam_profile_counts_the_dense_positional_encoding_of_its_decoder():
    cfg = tiny_model_config()  # SAM vit_micro at 256 px: a 16x16 prompt grid
    frozen = profile_model(cfg)["frozen"]
    assert [p["name"] for p in frozen] == ["sam.image_encoder", "sam.mask_decoder", "sam.prompt_encoder"]
    # get_dense_pe: the 16x16x2 grid coordinates times SAM's 2x128 random Fourier matrix.
    assert frozen[2]["flops"] == 2 * (16 * 16) * 2 * 128 and frozen[2]["params"] == 6220
