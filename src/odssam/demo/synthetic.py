"""A synthetic anomaly dataset in MVTec AD's layout, drawn by :mod:`odssam.data.synthetic`.

Layout (MVTec AD, so the ``mvtec`` dataset loader reads it)::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png
    <root>/<category>/test/<defect>/000.png
    <root>/<category>/ground_truth/<defect>/000_mask.png

Everything is drawn with NumPy and Pillow from one seed: the same call gives the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odssam.data.synthetic import DEFECTS, TEXTURES, render_surface
from odssam.errors import OdsSamError
from odssam.inference.io import write_png

__all__ = ["DEFECTS", "TEXTURES", "SyntheticDataset", "generate_dataset", "render_surface"]


@dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`generate_dataset` wrote.

    Attributes:
        root: Dataset root (pass it as ``data.root`` with ``data.dataset: mvtec``).
        category: Category folder name under ``root``.
        defects: Defect types, each with ``per_defect`` test images and masks.
        per_defect: Abnormal images per defect type.
        good: Defect-free images in ``train/good`` and in ``test/good`` each.
    """

    root: Path
    category: str
    defects: tuple[str, ...]
    per_defect: int
    good: int

    @property
    def category_dir(self) -> Path:
        return self.root / self.category


def generate_dataset(
    root: str | Path,
    category: str = "fabric",
    *,
    texture: str | None = None,
    defects: Sequence[str] = DEFECTS,
    per_defect: int = 8,
    good: int = 4,
    image_size: int = 256,
    seed: int = 0,
) -> SyntheticDataset:
    """Write a synthetic MVTec-AD-style category.

    Args:
        root: Dataset root; ``root/<category>`` is created.
        category: Category folder name.
        texture: Texture of every image (default: the category name if it is a texture,
            else ``fabric``).
        defects: Defect types (subset of :data:`DEFECTS`).
        per_defect: Abnormal images per defect type.
        good: Defect-free images written to ``train/good`` and to ``test/good`` each.
        image_size: Side of the square images.
        seed: Seed of everything drawn.

    Returns:
        A :class:`SyntheticDataset`.

    Raises:
        OdsSamError: Unknown texture or defect, or counts/sizes out of range.
    """
    texture = texture or (category if category in TEXTURES else "fabric")
    if texture not in TEXTURES:
        raise OdsSamError(f"unknown texture '{texture}'; choose one of {', '.join(TEXTURES)}")
    unknown = [d for d in defects if d not in DEFECTS]
    if unknown or not defects:
        raise OdsSamError(f"defects must be a non-empty subset of {', '.join(DEFECTS)}, got {list(defects)}")
    if per_defect < 1 or good < 0 or image_size < 32:
        raise OdsSamError(
            f"need per_defect >= 1, good >= 0 and image_size >= 32; got {per_defect}, {good}, {image_size}"
        )
    folder = Path(root) / category
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for index in range(good):
            image, _, _ = render_surface(rng, image_size, image_size, texture, None)
            write_png(image, folder / split / "good" / f"{index:03d}.png")
    for defect in defects:
        for index in range(per_defect):
            image, mask, _ = render_surface(rng, image_size, image_size, texture, defect)
            write_png(image, folder / "test" / defect / f"{index:03d}.png")
            write_png(mask, folder / "ground_truth" / defect / f"{index:03d}_mask.png")
    return SyntheticDataset(Path(root), category, tuple(defects), per_defect, good)
