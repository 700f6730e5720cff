"""The sample type every dataset returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sample:
    """One image with its binary ground-truth mask.

    Attributes:
        image: HxWx3 uint8 RGB array (after the dataset's optional resizing).
        mask: HxW bool array, True on the foreground (anomaly, polyp, nucleus, gland).
        name: Sample name, unique within its dataset split (the image file stem, or
            ``<defect>_<stem>`` for MVTec AD).
        original_size: ``(height, width)`` of the image file before any resizing.
        path: Source image file.
        mask_path: Source mask or annotation file (``None`` for defect-free MVTec AD
            images, whose masks are empty by definition).
    """

    image: np.ndarray
    mask: np.ndarray
    name: str
    original_size: tuple[int, int]
    path: str
    mask_path: str | None = None


def collate_samples(samples: list[Sample]) -> list[Sample]:
    """Collate function for ``DataLoader`` that keeps the batch a list of :class:`Sample`.

    Images of one batch may differ in size; SAM preprocessing resizes them later, per image.
    """
    return list(samples)
