"""Generated prediction/ground-truth pairs for the metric tests.

"Real-looking" pairs: blob-shaped masks (a few ellipses, as polyps or defects look) and
predictions made from them the way a segmentation model errs: shifted, blurred, noisy,
with a spurious blob, stored as 8-bit maps like the files users score.
"""

from __future__ import annotations

import numpy as np
from helpers import random_ellipse


def ellipse_mask(shape: tuple[int, int], rng: np.random.Generator, n_blobs: int = 2) -> np.ndarray:
    """Bool mask with ``n_blobs`` random ellipses."""
    mask = np.zeros(shape, dtype=bool)
    for _ in range(n_blobs):
        mask |= random_ellipse(shape, rng, centre=(0.2, 0.8), radius=(0.05, 0.25))
    return mask


def box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable mean filter with edge padding (a cheap stand-in for a soft prediction)."""
    if radius == 0:
        return image.astype(np.float64)
    kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
    padded = np.pad(image.astype(np.float64), radius, mode="edge")
    rows = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, rows)


def realistic_pair(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(pred_uint8, gt_uint8)``: a blob mask (0/255) and a plausible 8-bit prediction of it."""
    gt = ellipse_mask(shape, rng, n_blobs=int(rng.integers(1, 4)))
    shifted = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
    spurious = ellipse_mask(shape, rng, n_blobs=1) & (rng.random() < 0.5)
    soft = box_blur(shifted | spurious, int(rng.integers(1, 4)))
    noisy = np.clip(0.85 * soft + 0.05 + rng.normal(0, 0.05, shape), 0, 1)
    return (noisy * 255).astype(np.uint8), gt.astype(np.uint8) * 255


def random_pair(shape: tuple[int, int], rng: np.random.Generator, fg_fraction: float = 0.3):
    """``(pred_uint8, gt_uint8)`` of independent uniform noise and a random mask."""
    pred = rng.integers(0, 256, shape, dtype=np.uint8)
    gt = (rng.random(shape) < fg_fraction).astype(np.uint8) * 255
    return pred, gt


def edge_case_pairs(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Named ``(name, pred_uint8, gt_uint8)`` pairs of the special cases of the reference tools."""
    shape = (24, 31)
    pred, gt = realistic_pair(shape, rng)
    empty = np.zeros(shape, np.uint8)
    full = np.full(shape, 255, np.uint8)
    one_pixel = empty.copy()
    one_pixel[7, 9] = 255
    one_pixel_pred = rng.integers(0, 60, shape, dtype=np.uint8)
    one_pixel_pred[7, 9] = 250
    return [
        ("empty gt", pred, empty),
        ("full gt", pred, full),
        ("constant pred", np.full(shape, 93, np.uint8), gt),
        ("zero pred", empty, gt),
        ("all-one pred", full, gt),
        ("empty gt and pred", empty, empty),
        ("one-pixel object", one_pixel_pred, one_pixel),
        ("one-pixel miss", empty, one_pixel),
        ("binary pred = gt", gt, gt),
    ]
