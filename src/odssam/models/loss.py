"""Training loss: 0.5 Dice + 0.5 BCE on the mask logits (paper, Section 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per image, averaged over the batch.

    Args:
        logits: Bx1xHxW raw logits.
        target: Bx1xHxW in [0, 1].
        smooth: Added to numerator and denominator so empty masks give a finite loss.
    """
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    intersection = (prob * target).sum(1)
    union = prob.sum(1) + target.sum(1)
    return (1.0 - (2.0 * intersection + smooth) / (union + smooth)).mean()


class DiceBCELoss(nn.Module):
    """``dice_weight * Dice(sigmoid(logits), y) + bce_weight * BCEWithLogits(logits, y)``."""

    def __init__(self, dice_weight: float = 0.5, bce_weight: float = 0.5):
        super().__init__()
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logits and target Bx1xHxW -> scalar loss (computed in fp32)."""
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return self.dice_weight * soft_dice_loss(logits, target) + self.bce_weight * bce


def masks_to_targets(
    masks, input_sizes: list[tuple[int, int]], image_size: int, logit_size: int
) -> torch.Tensor:
    """Binary masks at original size -> Bx1xLxL targets aligned with the decoder's logits.

    Each mask is resized the way :func:`odssam.models.transforms.sam_preprocess` resizes
    its image (longest side to the padded square, aspect kept), but straight to the logit
    grid (L = ``logit_size``), then zero-padded bottom/right like the image.

    Args:
        masks: Sequence of HxW bool/uint8 arrays or tensors.
        input_sizes: Per-image (h, w) after resizing to ``image_size`` (from preprocessing).
        image_size: Side of SAM's padded input (1024).
        logit_size: Side of the decoder's logits (256).
    """
    scale = logit_size / image_size
    targets = torch.zeros(len(masks), 1, logit_size, logit_size)
    for i, (mask, (h, w)) in enumerate(zip(masks, input_sizes)):
        mask = torch.as_tensor(mask).float()[None, None]
        th, tw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = F.interpolate(mask, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
        targets[i, :, :th, :tw] = (resized[0] > 0.5).float()
    return targets
