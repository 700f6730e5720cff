"""AutoSAM's prompt network (Shaharabany et al., 2023): a CNN encoder-decoder to SAM's dense prompt.

AutoSAM overloads SAM's prompt encoder: a HarDNet-85 encoder and a U-Net style decoder map
the image, resized to 512x512, to a dense prompt, fed to the frozen mask decoder in place
of the no-mask embedding. Its decoder joins the stride-16, 8 and 4 features with two
skip-connected up blocks (widths 320 and 192, those of the skips), then two 3x3 convolutions
to 256 channels, ``tanh``, and a bilinear resize of the stride-4 map to SAM's 64x64 grid.

The one change here: AutoSAM's code computes HarDNet-85's stride-32 stage (17.5 M parameters)
but never reads it. Here a first up block joins it to the stride-16 feature, so every
parameter trains; its width (``model.prompt_encoder.autosam.top_channels``, 1440) makes the
network the 88.6 M parameters the ODS-SAM paper reports for AutoSAM (Table 7): 88.2 M here
(35.4 M HarDNet-85, 52.8 M decoder).

Shapes (HarDNet-85, ``S`` = ``model.prompt_encoder.input_size``, 512)::

    x Bx3xSxS --HarDNet--> 192xS/4, 320xS/8, 720xS/16, 1280xS/32
      up(1280 -> 720 skip) -> 1440xS/16 -> up(320 skip) -> 320xS/8 -> up(192 skip) -> 192xS/4
      head -> tanh -> Bx256xS/4xS/4 --bilinear--> Bx256xS/8xS/8 (64x64 at S = 512)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odssam.config import PromptEncoderConfig
from odssam.errors import OdsSamError
from odssam.models.base import DensePromptEncoder
from odssam.models.baselines import PROMPT_CHANNELS, build_frozen_segmenter_model
from odssam.models.baselines.hardnet import HARDNET_SPECS, HarDNet

MIN_INPUT_SIZE = 64  # HarDNet reduces by 32; BatchNorm needs more than one value per channel


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class SkipUpBlock(nn.Module):
    """AutoSAM's up block: upsample to the skip's size, concatenate, two 3x3 convs, BN, leaky ReLU.

    Shapes: deep BxC_dxhxw and skip BxC_sxHxW -> Bx``out_channels``xHxW.
    """

    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = conv3x3(deep_channels + skip_channels, out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        # No activation between the two convs, as AutoSAM's block.
        return F.leaky_relu(self.norm(self.conv2(self.conv1(torch.cat((deep, skip), 1)))))


class AutoSamDecoder(nn.Module):
    """Features at strides 4, 8, 16, 32 -> ``tanh`` dense prompt Bx256xS/4xS/4.

    Args:
        feature_channels: Channels of the four features, stride 4 first.
        top_channels: Width of the first up block (stride 32 -> 16); the other two take
            their skip's width (AutoSAM's rule).
    """

    def __init__(self, feature_channels: list[int], top_channels: int):
        super().__init__()
        c4, c8, c16, c32 = feature_channels
        self.up16 = SkipUpBlock(c32, c16, top_channels)
        self.up8 = SkipUpBlock(top_channels, c8, c8)
        self.up4 = SkipUpBlock(c8, c4, c4)
        self.head = nn.Sequential(
            conv3x3(c4, PROMPT_CHANNELS),
            nn.BatchNorm2d(PROMPT_CHANNELS),
            nn.ReLU(inplace=True),
            conv3x3(PROMPT_CHANNELS, PROMPT_CHANNELS),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x4, x8, x16, x32 = features
        return torch.tanh(self.head(self.up4(self.up8(self.up16(x32, x16), x8), x4)))


class AutoSamPromptEncoder(DensePromptEncoder):
    """HarDNet + AutoSAM decoder: Bx3xSxS -> dense prompt Bx256xS/8xS/8 (values in -1..1).

    Args:
        cfg: Prompt encoder settings: ``input_size`` (S) and ``autosam``.
    """

    def __init__(self, cfg: PromptEncoderConfig):
        super().__init__()
        if cfg.input_size < MIN_INPUT_SIZE:
            raise OdsSamError(
                f"config key model.prompt_encoder.input_size: got {cfg.input_size}; "
                f"the autosam prompt network needs at least {MIN_INPUT_SIZE}"
            )
        self.input_size = cfg.input_size
        self.backbone = HarDNet(HARDNET_SPECS[cfg.autosam.backbone])
        self.decoder = AutoSamDecoder(self.backbone.feature_channels, cfg.autosam.top_channels)
        self.channels_last = False

    def set_channels_last(self, enabled: bool = True) -> AutoSamPromptEncoder:
        """Convolution weights and activations in channels-last layout (faster cuDNN kernels; same values)."""
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self.channels_last = bool(enabled)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3xSxS -> Bx256xS/8xS/8."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        prompt = self.decoder(self.backbone(x))
        grid = (self.input_size // 8, self.input_size // 8)
        # AutoSAM resizes its stride-4 map to SAM's grid with corners aligned.
        return F.interpolate(prompt, size=grid, mode="bilinear", align_corners=True)


def build_autosam_encoder(cfg: PromptEncoderConfig, load_weights: bool = False) -> AutoSamPromptEncoder:
    """The registered builder (``model.prompt_encoder.name: autosam``); random initialisation.

    ``load_weights`` is accepted for the registry's signature and has nothing to load:
    HarDNet starts from random weights (AutoSAM's code starts it from ImageNet weights;
    loading those is not implemented).
    """
    return AutoSamPromptEncoder(cfg)


def build_autosam(cfg=None, checkpoint: str | None = None, *, feature_encoder_weights: bool = True):
    """``model.name: autosam``: the frozen segmenter driven by :class:`AutoSamPromptEncoder`."""
    return build_frozen_segmenter_model(cfg, "autosam", checkpoint, feature_encoder_weights)
