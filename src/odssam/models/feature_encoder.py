"""EfficientViT feature encoder with the EfficientViT-SAM neck.

The backbone is MIT han-lab's EfficientViT-Large family (multi-scale linear attention),
taken from ``timm`` and built here with random weights (pretrained ones are loaded by
:mod:`odssam.models.feature_encoder_weights`). Its last three stages give
feature maps at strides 8, 16 and 32 (128, 256 and 512 channels for L0/L1/L2). The
neck follows EfficientViT-SAM: each level is projected to the prompt width by a 1x1
conv + BN, resized to the stride-8 grid and summed, refined by residual FusedMBConv
blocks, projected by a 1x1 conv and normalised by a channel LayerNorm.

For a 512x512 input the result is Bx256x64x64, aligned with SAM's image-embedding grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from timm.layers import GELUTanh
from timm.models.efficientvit_mit import EfficientVitLarge, FusedMBConv, ResidualBlock
from torch import nn

from odssam.config import FeatureEncoderConfig
from odssam.errors import OdsSamError
from odssam.models.resize import resize_bicubic

UPSAMPLE_MODES = ("bilinear", "bicubic")


@dataclass(frozen=True)
class EfficientViTLargeSpec:
    """Widths and depths of the stem and the four stages of an EfficientViT-Large model."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    head_dim: int = 32


class EfficientViTBackbone(nn.Module):
    """Stem and stages of timm's ``EfficientVitLarge``, returning the last three levels.

    The classifier head is dropped. Parameter names (``stem.*``, ``stages.*``) are
    those of timm's model, so its ImageNet weights load into this module.

    Args:
        spec: Widths/depths of the stem and the stages.

    Shapes:
        Bx3xHxW -> [Bx C2 x H/8 x W/8, Bx C3 x H/16 x W/16, Bx C4 x H/32 x W/32]
        with (C2, C3, C4) = ``spec.widths[2:]``.
    """

    def __init__(self, spec: EfficientViTLargeSpec):
        super().__init__()
        if len(spec.widths) != 5 or len(spec.depths) != 5:
            raise ValueError("an EfficientViT-Large spec has a stem and four stages (5 widths, 5 depths)")
        # A one-unit head keeps the discarded classifier from allocating millions of weights.
        model = EfficientVitLarge(
            widths=spec.widths, depths=spec.depths, head_dim=spec.head_dim, head_widths=(1, 1), num_classes=0
        )
        self.stem = model.stem
        self.stages = model.stages
        self.out_channels = tuple(spec.widths[2:])
        self.strides = (8, 16, 32)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        levels = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index >= 1:
                levels.append(x)
        return levels


def build_efficientvit_l0() -> EfficientViTBackbone:
    """EfficientViT-L0 (MIT definition; not registered in timm): depths 1-1-1-4-4."""
    return EfficientViTBackbone(EfficientViTLargeSpec((32, 64, 128, 256, 512), (1, 1, 1, 4, 4)))


def build_efficientvit_l1() -> EfficientViTBackbone:
    """EfficientViT-L1: depths 1-1-1-6-6; its last stage holds the paper's n = 6 blocks."""
    return EfficientViTBackbone(EfficientViTLargeSpec((32, 64, 128, 256, 512), (1, 1, 1, 6, 6)))


def build_efficientvit_l2() -> EfficientViTBackbone:
    """EfficientViT-L2: depths 1-2-2-8-8."""
    return EfficientViTBackbone(EfficientViTLargeSpec((32, 64, 128, 256, 512), (1, 2, 2, 8, 8)))


def build_efficientvit_tiny() -> EfficientViTBackbone:
    """A few-thousand-parameter model of the same structure, for tests."""
    return EfficientViTBackbone(EfficientViTLargeSpec((8, 8, 16, 16, 32), (0, 1, 1, 1, 1), head_dim=8))


FEATURE_ENCODERS: dict[str, Callable[[], EfficientViTBackbone]] = {
    "efficientvit_l0": build_efficientvit_l0,
    "efficientvit_l1": build_efficientvit_l1,
    "efficientvit_l2": build_efficientvit_l2,
    "efficientvit_tiny": build_efficientvit_tiny,
}


def build_backbone(name: str) -> EfficientViTBackbone:
    """Build a registered backbone by name (see :data:`FEATURE_ENCODERS`)."""
    try:
        builder = FEATURE_ENCODERS[name]
    except KeyError:
        raise OdsSamError(
            f"unknown feature encoder backbone '{name}' (config key model.prompt_encoder.feature_encoder."
            f"backbone); choose one of: {', '.join(FEATURE_ENCODERS)}"
        ) from None
    return builder()


class SamNeck(nn.Module):
    """EfficientViT-SAM neck: fuse three levels into one map at the finest level's grid.

    Args:
        in_channels: Channels of the input levels, finest first.
        width: Channels of the fused map and of the output.
        num_blocks: Residual FusedMBConv (expand ratio 1) blocks after the fusion.
        upsample_mode: Interpolation that resizes coarser levels (``bilinear``/``bicubic``).

    Shapes:
        levels (Bx C_i x H_i x W_i), output size (h, w) -> Bx width x h x w.
    """

    def __init__(
        self, in_channels: Sequence[int], width: int = 256, num_blocks: int = 8, upsample_mode: str = "bilinear"
    ):
        super().__init__()
        self.upsample_mode = upsample_mode
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width))
            for channels in in_channels
        )
        self.blocks = nn.Sequential(
            *(
                ResidualBlock(
                    FusedMBConv(width, width, kernel_size=3, expand_ratio=1, act_layer=(GELUTanh, None)),
                    nn.Identity(),
                )
                for _ in range(num_blocks)
            )
        )
        self.proj = nn.Conv2d(width, width, 1)
        self.norm = LayerNorm2d(width)

    def forward(self, levels: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        fused = None
        for lateral, level in zip(self.lateral, levels):
            y = lateral(level)
            if tuple(y.shape[-2:]) != tuple(size):
                y = self.resize(y, size)
            fused = y if fused is None else fused + y
        return self.norm(self.proj(self.blocks(fused)))

    def resize(self, y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bx width x h x w -> Bx width x size; bicubic through :func:`resize_bicubic` (the same
        function as ``F.interpolate``'s, whose CUDA kernel is slow on these shapes)."""
        if self.upsample_mode == "bicubic":
            return resize_bicubic(y, size)
        return F.interpolate(y, size=size, mode=self.upsample_mode, align_corners=False)


def set_norm_eps(module: nn.Module, eps: float) -> None:
    """Set the epsilon of every BatchNorm and LayerNorm(2d) in ``module`` (in place)."""
    for child in module.modules():
        if isinstance(child, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, LayerNorm2d)):
            child.eps = eps


class FeatureEncoder(nn.Module):
    """EfficientViT backbone + EfficientViT-SAM neck.

    Args:
        cfg: Backbone name, neck depth, output channels, upsampling mode and norm epsilon
            (``cfg.checkpoint`` is read by the builder, :mod:`odssam.models.feature_encoder_weights`);
            its values were checked when it was built (:func:`odssam.config.from_dict`).

    Shapes:
        Bx3xSxS -> Bx C x S/8 x S/8 with C = ``cfg.out_channels`` (Bx256x64x64 at S = 512).
        S must be a multiple of 8.
    """

    def __init__(self, cfg: FeatureEncoderConfig):
        super().__init__()
        self.backbone = build_backbone(cfg.backbone)
        self.neck = SamNeck(self.backbone.out_channels, cfg.out_channels, cfg.neck_blocks, cfg.upsample_mode)
        self.out_channels = cfg.out_channels
        if cfg.norm_eps is not None:
            set_norm_eps(self, float(cfg.norm_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % 8 or width % 8:
            raise ValueError(f"feature encoder input sides must be multiples of 8, got {height}x{width}")
        return self.neck(self.backbone(x), (height // 8, width // 8))
