"""Histograms of a quantised map split by a mask, the core of every threshold-swept metric."""

from __future__ import annotations

import numpy as np


def split_histogram(levels: np.ndarray, mask: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Count each level separately outside and inside ``mask``.

    Args:
        levels: ``HxW`` integer levels in ``[0, num_bins)``.
        mask: ``HxW`` bool mask.
        num_bins: Number of levels.

    Returns:
        ``(outside, inside)``: two int64 arrays of ``num_bins`` counts.
    """
    # Counting all pixels and then the (usually fewer) masked ones beats building a
    # combined level-and-mask code for every pixel.
    total = np.bincount(levels.reshape(-1), minlength=num_bins)
    inside = np.bincount(levels[mask], minlength=num_bins)
    return total - inside, inside
