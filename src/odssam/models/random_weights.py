"""One warning, worded as training says it, when a model's pretrained parts have random weights.

Random frozen-segmenter weights (``model.sam.checkpoint: null``) run fine and make every
score meaningless; so does an untrained model whose trainable part starts from random
weights. Training prints this on its own log; prediction, export, ``odssam forward``,
evaluation and :func:`odssam.load` log it through :func:`warn_random_weights`.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("odssam")

NOT_MEANINGFUL = "scores are not meaningful"
RANDOM_INITIALISATION = "random initialisation"  # a trainable part's weights_description without a file


def random_sam_text(sam_cfg) -> str:
    """Training's description of random SAM weights: ``RANDOM weights (init_seed 0): scores are not meaningful``."""
    return f"RANDOM weights (init_seed {sam_cfg.init_seed}): {NOT_MEANINGFUL}"


def random_weights_message(model, model_cfg, *, trained: bool) -> str | None:
    """The warning for a built model, or ``None`` when none of its parts is random.

    Args:
        model: A :class:`~odssam.models.base.SegmentationModel` (its ``segmenter``, ``None``
            for a baseline without one, and its ``trainable`` part).
        model_cfg: Its :class:`~odssam.config.ModelConfig` (names and ``sam.init_seed``).
        trained: The trainable part's weights come from a trained odssam checkpoint (its
            starting weights then do not matter).
    """
    segmenter = getattr(model, "segmenter", None)
    random_sam = segmenter is not None and segmenter.weights_source is None
    random_parts = [f"SAM {model_cfg.sam.variant} (init_seed {model_cfg.sam.init_seed})"] if random_sam else []
    trainable = getattr(model, "trainable", None)
    if not trained and getattr(trainable, "weights_description", None) == RANDOM_INITIALISATION:
        if model_cfg.name == "ods_sam":
            random_parts.append("feature encoder (no model.prompt_encoder.feature_encoder.checkpoint)")
        else:
            random_parts.append(f"{model_cfg.name} (no starting weights)")
    if not random_parts:
        return None
    if len(random_parts) == 1 and random_sam:
        return f"SAM {model_cfg.sam.variant}: {random_sam_text(model_cfg.sam)}"
    return f"RANDOM weights: {' and '.join(random_parts)}: {NOT_MEANINGFUL}"


def warn_random_weights(model, model_cfg, *, trained: bool) -> str | None:
    """Log :func:`random_weights_message` as one warning line (if any part is random); return it."""
    message = random_weights_message(model, model_cfg, trained=trained)
    if message is not None:
        logger.warning(message)
    return message
