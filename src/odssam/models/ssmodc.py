"""SSMODC: the refinement block of ODS-SAM's prompt encoder (paper Fig. 1).

Applied to the feature encoder's map F (Bx256x64x64), in this order:

1. a depthwise-separable convolution (DW 3x3 -> PW 1x1 -> BN),
2. ``ssm.num_layers`` OD-SSM blocks (VMamba-style SS2D with residual, see :mod:`odssam.models.od_ssm`),
3. ``odconv.num_layers`` ODConv layers with dilations 1, 2, ...; each ODConv -> BN -> GELU,
   either parallel branches fused by summation (default) or stacked one after the other
   (``odconv.arrangement``; the paper does not say which).

Each stage can be switched off for the paper's ablations (Tables 4-6). The residual
``P = F + SSMODC(F)`` is added by the prompt encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from odssam.config import ODConvConfig, PromptEncoderConfig
from odssam.models.od_ssm import ODSSMBlock
from odssam.models.odconv import ODConv2d


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise 3x3 conv -> pointwise 1x1 conv -> BN; BxCxHxW -> BxCxHxW.

    Both convolutions keep PyTorch's default bias; with it the default prompt encoder
    has 53,686,690 parameters, the paper's 53.687 M.
    """

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.pointwise = nn.Conv2d(dim, dim, 1)
        self.norm = nn.BatchNorm2d(dim)


ODCONV_ARRANGEMENTS = ("parallel", "stacked")


class DilatedODConv(nn.Module):
    """ODConv -> BN -> GELU layers at dilations 1..num_layers, parallel or stacked.

    ``parallel``: ``sum_d layer_d(x)``; ``stacked``: ``layer_n(... layer_1(x))``. The layers
    (and their state-dict keys, ``branches.<d-1>``) are the same in both arrangements.

    Args:
        dim: Input and output channels.
        cfg: ODConv settings (number of layers, arrangement, kernel, candidate kernels, attention).

    Shapes:
        BxCxHxW -> BxCxHxW (padding keeps the size at every dilation).
    """

    def __init__(self, dim: int, cfg: ODConvConfig):
        super().__init__()
        self.arrangement = cfg.arrangement
        self.branches = nn.ModuleList(
            nn.Sequential(
                ODConv2d(
                    dim,
                    dim,
                    cfg.kernel_size,
                    dilation=dilation,
                    reduction=cfg.reduction,
                    kernel_num=cfg.kernel_num,
                    min_channels=cfg.min_channels,
                    temperature=cfg.temperature,
                    per_sample=cfg.per_sample,
                ),
                nn.BatchNorm2d(dim),
                nn.GELU(),
            )
            for dilation in range(1, cfg.num_layers + 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arrangement == "stacked":
            for layer in self.branches:
                x = layer(x)
            return x
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class SSMODC(nn.Module):
    """Depthwise-separable conv, OD-SSM blocks and dilated ODConv branches in sequence.

    Disabled stages are ``None``; with every stage disabled the block is the identity.

    Args:
        dim: Channels of the map (SAM's prompt width, 256).
        cfg: Prompt encoder settings (``use_dwconv``, ``use_ssm``, ``use_odconv``,
            ``ssm`` and ``odconv`` sub-configs), checked when it was built
            (:func:`odssam.config.from_dict`, which also refuses an enabled stage with no layers).

    Shapes:
        BxCxHxW -> BxCxHxW (Bx256x64x64 in the default model).
    """

    def __init__(self, dim: int, cfg: PromptEncoderConfig):
        super().__init__()
        self.dwconv = DepthwiseSeparableConv(dim) if cfg.use_dwconv else None
        self.od_ssm = (
            nn.Sequential(*(ODSSMBlock(dim, cfg.ssm) for _ in range(cfg.ssm.num_layers))) if cfg.use_ssm else None
        )
        self.odconv = DilatedODConv(dim, cfg.odconv) if cfg.use_odconv else None

    @property
    def is_identity(self) -> bool:
        return self.dwconv is None and self.od_ssm is None and self.odconv is None

    def set_odconv_temperature(self, temperature: float) -> None:
        """Set the attention temperature of every ODConv layer (annealing schedules call this)."""
        for module in self.modules():
            if isinstance(module, ODConv2d):
                module.update_temperature(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in (self.dwconv, self.od_ssm, self.odconv):
            if stage is not None:
                x = stage(x)
        return x

