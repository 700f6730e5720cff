"""Baselines, trained, evaluated, predicted and exported by the same commands as ODS-SAM.

On the same frozen segmenter (only the learned dense prompt differs):

* ``model.name: sam_noprompt`` (:mod:`.noprompt`): one learned dense embedding.
* ``model.name: autosam`` (:mod:`.autosam`): AutoSAM's HarDNet-85 encoder-decoder.

Each is an :class:`~odssam.models.ods_sam.OdsSam` with another prompt encoder, so training,
evaluation, prediction, export and profiling treat them as ODS-SAM.

Without a frozen segmenter: ``model.name: unet`` (:mod:`.unet`), a U-Net on a timm encoder.
"""

from __future__ import annotations

PROMPT_CHANNELS = 256  # SAM's (and SAM 2's) prompt embedding width


def build_frozen_segmenter_model(cfg, prompt_encoder_name: str, checkpoint: str | None, feature_encoder_weights: bool):
    """:func:`~odssam.models.ods_sam.build_ods_sam` with ``model.prompt_encoder.name`` set to ``prompt_encoder_name``.

    Args:
        cfg: A :class:`~odssam.config.ModelConfig` (``None``: the defaults).
        prompt_encoder_name: Key of :data:`odssam.models.registry.PROMPT_ENCODERS`.
        checkpoint: Overrides ``cfg.sam.checkpoint``.
        feature_encoder_weights: Load the prompt encoder's starting weights, if it has any.
    """
    from odssam.config import ModelConfig, with_overrides
    from odssam.models.ods_sam import build_ods_sam

    cfg = with_overrides(cfg or ModelConfig(), {"prompt_encoder.name": prompt_encoder_name}, "model.")
    return build_ods_sam(cfg, checkpoint, feature_encoder_weights=feature_encoder_weights)
