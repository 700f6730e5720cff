"""Dice and IoU in the two conventions the paper's comparison tables mix.

* Fixed threshold (MoNuSeg, GlaS; AutoSAM, LViT): the probability map is binarised at
  ``prob > 0.5``, Dice and IoU are computed per image and averaged over images. Reported
  as ``dice@0.5`` / ``iou@0.5``.
* PraNet's polyp convention: the min-max normalised map is binarised at each of the 256
  levels, Dice and IoU are computed per image and threshold, averaged over images and then
  over thresholds. Reported as ``meanDic`` / ``meanIoU``. As in PraNet's evaluation code, an
  image scores 0 at a threshold where prediction and ground truth share no pixel, even when
  both are empty.
"""

from __future__ import annotations

import numpy as np


def dice_iou_at_threshold(
    prob: np.ndarray, gt: np.ndarray, threshold: float = 0.5, empty_score: float = 1.0
) -> tuple[float, float]:
    """Dice and IoU of the binary map ``prob > threshold`` for one image.

    Args:
        prob: ``HxW`` probability map in [0, 1] (not normalised).
        gt: ``HxW`` bool mask.
        threshold: Binarisation threshold; ``>`` so a probability of exactly 0.5 is
            background, as an argmax over (background, foreground) decides.
        empty_score: Score of an image whose prediction and ground truth are both empty.

    Returns:
        ``(dice, iou)``.
    """
    binary = prob > threshold
    intersection = np.count_nonzero(binary & gt)
    pred_count = np.count_nonzero(binary)
    gt_count = np.count_nonzero(gt)
    total = pred_count + gt_count
    if total == 0:
        return float(empty_score), float(empty_score)
    union = total - intersection
    return 2 * intersection / total, intersection / union


def dice_iou_from_counts(tp, fp, n_fg: int) -> tuple[np.ndarray, np.ndarray]:
    """PraNet's Dice and IoU from confusion counts (0 wherever ``tp`` is 0).

    Args:
        tp: True positives, scalar or array (e.g. one per threshold).
        fp: False positives, same shape.
        n_fg: Foreground pixels of the ground truth.

    Returns:
        ``(dice, iou)`` float64 arrays of the shape of ``tp``.
    """
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    overlap = tp > 0  # where tp > 0 the denominators are positive too
    dice = np.divide(2 * tp, n_fg + tp + fp, out=np.zeros_like(tp), where=overlap)
    iou = np.divide(tp, n_fg + fp, out=np.zeros_like(tp), where=overlap)
    return dice, iou
