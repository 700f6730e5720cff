"""Names -> builders, for every swappable part of a model (as ``segment_anything.sam_model_registry``).

* :data:`MODELS`: ``model.name`` -> builder of a :class:`~odssam.models.base.SegmentationModel`:
  ``ods_sam`` and the baselines without SAM (:mod:`odssam.models.baselines`).
* :data:`SEGMENTER_VARIANTS`: ``model.sam.variant`` -> builder of the frozen segmenter
  (:class:`~odssam.models.segmenter.FrozenSegmenter`): SAM's ViTs and SAM 2's Hieras.
* :data:`PROMPT_ENCODERS`: ``model.prompt_encoder.name`` -> builder of the learned dense
  prompt (:class:`~odssam.models.base.DensePromptEncoder`).

Builders are named ``"module:function"`` and imported only when used, so a family's
package (``sam2``) is needed only by its variants. A new segmenter, prompt encoder or model
is one new file plus one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from odssam.errors import OdsSamError
from odssam.models.sam import SAM_REGISTRY
from odssam.models.sam2 import SAM2_VARIANTS

MODELS: dict[str, str] = {
    "ods_sam": "odssam.models.ods_sam:build_ods_sam",
    "sam_noprompt": "odssam.models.baselines.noprompt:build_sam_noprompt",
    "autosam": "odssam.models.baselines.autosam:build_autosam",
    "unet": "odssam.models.baselines.unet:build_unet",
}

SEGMENTER_VARIANTS: dict[str, str] = {
    **{variant: "odssam.models.sam:build_sam_segmenter" for variant in SAM_REGISTRY},
    **{variant: "odssam.models.sam2:build_sam2_segmenter" for variant in SAM2_VARIANTS},
}

PROMPT_ENCODERS: dict[str, str] = {
    "ods": "odssam.models.prompt_encoder:build_prompt_encoder",
    "noprompt": "odssam.models.baselines.noprompt:build_noprompt_encoder",
    "autosam": "odssam.models.baselines.autosam:build_autosam_encoder",
}


def resolve_builder(registry: dict[str, str], name: str, what: str) -> Callable:
    """The builder registered under ``name``; :class:`OdsSamError` naming the choices otherwise."""
    try:
        module_name, function = registry[name].split(":")
    except KeyError:
        raise OdsSamError(f"unknown {what} '{name}'; choose one of {', '.join(registry)}") from None
    return getattr(importlib.import_module(module_name), function)


def build_model(cfg=None, checkpoint: str | None = None, *, feature_encoder_weights: bool = True):
    """Build the model ``cfg.name`` names from a :class:`~odssam.config.ModelConfig`.

    Args:
        cfg: Model configuration (default: the paper's ODS-SAM).
        checkpoint: Overrides ``cfg.sam.checkpoint`` (a path or ``"auto"``).
        feature_encoder_weights: Load the trainable part's starting weights. Pass ``False``
            when its weights will come from a trained odssam checkpoint.
    """
    from odssam.config import ModelConfig

    cfg = cfg or ModelConfig()
    builder = resolve_builder(MODELS, cfg.name, "model (model.name)")
    return builder(cfg, checkpoint, feature_encoder_weights=feature_encoder_weights)


def build_segmenter(cfg, checkpoint: str | None = None):
    """Build the frozen segmenter of a :class:`~odssam.config.SamConfig`.

    ``checkpoint`` overrides ``cfg.checkpoint``. Random weights (no checkpoint) come from
    ``cfg.init_seed``, so a run trained on random weights reloads the same ones.
    """
    builder = resolve_builder(SEGMENTER_VARIANTS, cfg.variant, "frozen segmenter (model.sam.variant)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return builder(cfg, checkpoint if checkpoint is not None else cfg.checkpoint)


def build_prompt_network(cfg, *, load_weights: bool = False):
    """Build the dense prompt encoder of a :class:`~odssam.config.PromptEncoderConfig`."""
    builder = resolve_builder(PROMPT_ENCODERS, cfg.name, "prompt encoder (model.prompt_encoder.name)")
    return builder(cfg, load_weights=load_weights)
