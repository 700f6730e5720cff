"""ODS-SAM's learned prompt encoder: EfficientViT feature encoder followed by SSMODC.

``P = F + SSMODC(F)`` with ``F = FeatureEncoder(x)``. The input is the padded 1024x1024
SAM input halved to ``input_size`` (512), the output is SAM's dense prompt embedding
(Bx256x64x64), fed to the frozen mask decoder in place of its no-mask embedding.

With the default configuration the encoder has about 53.687 M parameters: 43.586 M
feature encoder, 0.07 M depthwise-separable conv, 0.57 M OD-SSM, 2 x 4.73 M ODConv.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from odssam.config import FeatureEncoderConfig, PromptEncoderConfig
from odssam.errors import OdsSamError
from odssam.models.base import DensePromptEncoder
from odssam.models.feature_encoder import FeatureEncoder
from odssam.models.feature_encoder_weights import initialise_feature_encoder
from odssam.models.selective_scan import scan_syncs_host
from odssam.models.ssmodc import SSMODC

logger = logging.getLogger(__name__)
ODCONV_START_TEMPERATURE = 30.0  # the ODConv paper's annealing starts here


def odconv_temperature(final: float, anneal_epochs: int, epoch_index: int) -> float:
    """ODConv attention temperature for 0-based ``epoch_index``.

    With ``anneal_epochs = N > 0`` (``train.odconv_temperature_anneal``) it falls linearly
    from 30 to ``final`` over the first N epochs (ODConv paper); else it is ``final``.
    """
    if anneal_epochs <= 0 or epoch_index >= anneal_epochs:
        return float(final)
    return ODCONV_START_TEMPERATURE - (ODCONV_START_TEMPERATURE - final) * epoch_index / anneal_epochs


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class OdsPromptEncoder(DensePromptEncoder):
    """Feature encoder + SSMODC with a residual connection.

    Args:
        cfg: Prompt encoder settings; ``cfg.residual`` selects ``F + SSMODC(F)``
            (paper) or ``SSMODC(F)``. With every SSMODC stage switched off the
            output is ``F`` (the "basic prompt encoder" of the ablations). Its values
            were checked when it was built (:func:`odssam.config.from_dict`).

    Shapes:
        Bx3xSxS -> Bx C x S/8 x S/8 with S = ``cfg.input_size`` (512) and
        C = ``cfg.feature_encoder.out_channels`` (256): Bx256x64x64 by default.
    """

    def __init__(self, cfg: PromptEncoderConfig):
        super().__init__()
        self.input_size = cfg.input_size
        self.residual = cfg.residual
        self.feature_encoder = FeatureEncoder(cfg.feature_encoder)
        # Where the feature encoder's weights came from; set by build_prompt_encoder when it loads them.
        self.feature_encoder_weights = "random initialisation"
        self.ssmodc = SSMODC(cfg.feature_encoder.out_channels, cfg)
        self.channels_last = False
        self.odconv_final_temperature = float(cfg.odconv.temperature)
        self.scan_backend = cfg.ssm.scan_backend
        self.has_odconv = cfg.use_odconv and cfg.odconv.num_layers > 0

    def set_channels_last(self, enabled: bool = True) -> OdsPromptEncoder:
        """Keep convolution kernels and activations in channels-last (NHWC) memory layout.

        The values are the same. On CUDA, cuDNN's NHWC kernels then run without a layout
        conversion around every convolution (BENCHMARKS.md, target 3); on the CPU the
        default layout is as fast, so the trainer and predictor enable it only on CUDA.
        """
        memory_format = torch.channels_last if enabled else torch.contiguous_format
        # Module.to(memory_format=...) would also reach ODConv's 5-D kernel bank and refuse it.
        for parameter in self.parameters():
            if parameter.dim() == 4:
                parameter.data = parameter.data.contiguous(memory_format=memory_format)
                if parameter.grad is not None:
                    parameter.grad = parameter.grad.contiguous(memory_format=memory_format)
        self.channels_last = bool(enabled)
        return self

    @property
    def out_channels(self) -> int:
        return self.feature_encoder.out_channels

    def set_odconv_temperature(self, temperature: float) -> None:
        """Set the attention temperature of every ODConv layer."""
        self.ssmodc.set_odconv_temperature(temperature)

    @property
    def weights_description(self) -> str:
        return self.feature_encoder_weights

    def start_epoch(self, epoch_index: int, train_cfg: Any) -> dict[str, float]:
        """Set the ODConv temperature of this epoch (annealed with ``train.odconv_temperature_anneal``)."""
        temperature = odconv_temperature(
            self.odconv_final_temperature, train_cfg.odconv_temperature_anneal, epoch_index
        )
        self.set_odconv_temperature(temperature)
        return {"odconv_temperature": temperature}

    def graph_unsupported_reason(self, train_cfg: Any, device: torch.device) -> str | None:
        if train_cfg is not None and self.has_odconv and train_cfg.odconv_temperature_anneal > 0:
            return "the ODConv temperature is annealed"
        if device.type == "cuda" and self.ssmodc.od_ssm is not None and scan_syncs_host(self.scan_backend, device):
            return "the chunked selective scan plans its chunks on the host (model.prompt_encoder.ssm.scan_backend)"
        return None

    def count_parameters(self) -> dict[str, int]:
        """Parameters per component: feature_encoder, dwconv, od_ssm, odconv and total."""
        return {
            "feature_encoder": _count(self.feature_encoder),
            "dwconv": _count(self.ssmodc.dwconv),
            "od_ssm": _count(self.ssmodc.od_ssm),
            "odconv": _count(self.ssmodc.odconv),
            "total": _count(self),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map the halved SAM input (Bx3xSxS) to the dense prompt (Bx256xS/8xS/8)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"prompt encoder expects Bx3xHxW images, got shape {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.feature_encoder(x)
        if self.ssmodc.is_identity:
            return features
        refined = self.ssmodc(features)
        return features + refined if self.residual else refined


def ods_sam_config() -> PromptEncoderConfig:
    """The paper's prompt encoder (EfficientViT-L1, 1 OD-SSM layer, 2 ODConv branches)."""
    return PromptEncoderConfig()


def tiny_config() -> PromptEncoderConfig:
    """Same structure at toy size (tiny EfficientViT, one neck block, 64x64 input -> 8x8 prompt).

    The output keeps 256 channels so it still fits SAM's mask decoder.
    """
    return PromptEncoderConfig(
        input_size=64, feature_encoder=FeatureEncoderConfig(backbone="efficientvit_tiny", neck_blocks=1)
    )


PROMPT_ENCODER_CONFIGS: dict[str, Callable[[], PromptEncoderConfig]] = {
    "default": ods_sam_config,
    "ods_sam": ods_sam_config,
    "tiny": tiny_config,
}


def build_prompt_encoder(cfg: PromptEncoderConfig | str, load_weights: bool = False) -> OdsPromptEncoder:
    """Build the prompt encoder from a config or from a name in :data:`PROMPT_ENCODER_CONFIGS`.

    Args:
        cfg: The config, or a registered name.
        load_weights: Load the feature encoder's starting weights named by
            ``cfg.feature_encoder.checkpoint`` (a model built to start training). Off by
            default: shape-only builds and models whose weights come from a trained
            checkpoint must not need that file.

    The result's ``feature_encoder_weights`` says where the feature encoder's weights came from.
    """
    if isinstance(cfg, str):
        try:
            cfg = PROMPT_ENCODER_CONFIGS[cfg]()
        except KeyError:
            raise OdsSamError(
                f"unknown prompt encoder '{cfg}'; choose one of: {', '.join(PROMPT_ENCODER_CONFIGS)}"
            ) from None
    encoder = OdsPromptEncoder(cfg)
    if load_weights:
        encoder.feature_encoder_weights = initialise_feature_encoder(encoder.feature_encoder, cfg.feature_encoder)
        logger.info("feature encoder starts from %s", encoder.feature_encoder_weights)
    return encoder
