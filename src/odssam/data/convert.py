"""Write a dataset's masks as binary PNGs (0/255), e.g. rasterised MoNuSeg XML or GlaS labels.

The output is itself a ``folder`` dataset: ``<out>/<split>/masks/<name>.png`` and, with
images, ``<out>/<split>/images/<name>.png``.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.base import load_entry
from odssam.data.image_io import write_png_atomic
from odssam.data.registry import EmptySplitError, build_dataset
from odssam.data.splits import SPLIT_NAMES
from odssam.errors import OdsSamError


def convert_dataset(
    name: str,
    root: str | Path,
    out: str | Path,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    category: str | None = None,
    with_images: bool = False,
    image_size: int | None = None,
    include_good: bool = False,
    split_seed: int = 0,
    test_fraction: float = 0.5,
    progress: bool = False,
) -> dict[str, int]:
    """Write every mask (and optionally image) of the given splits as PNG files.

    Args:
        name: Registry name.
        root: Dataset folder.
        out: Output folder (created).
        splits: Splits to write; a split that is empty in this folder is skipped.
        category: As for :func:`~odssam.data.build_dataset`.
        with_images: Also write the images (as PNG, RGB).
        image_size: Resize to this square size (image bilinear, mask nearest).
        include_good: MVTec AD: include defect-free images.
        split_seed: Seed of the seeded splits.
        test_fraction: Test fraction of the seeded splits.
        progress: Show a progress bar on stderr.

    Returns:
        Files written per split (masks only).

    Raises:
        OdsSamError: If the dataset has problems or no split has images.
    """
    from tqdm import tqdm

    out = Path(out)
    written: dict[str, int] = {}
    for split in splits:
        if split not in SPLIT_NAMES:
            raise OdsSamError(f"unknown split '{split}'; choose from {', '.join(SPLIT_NAMES)}")
        try:
            dataset = build_dataset(
                name, root, split, category=category, image_size=image_size,
                include_good=include_good, split_seed=split_seed, test_fraction=test_fraction,
            )
        except EmptySplitError:
            continue
        for entry in tqdm(dataset.entries, desc=f"{name} {split}", disable=not progress):
            sample = load_entry(entry, image_size)
            write_png_atomic(sample.mask, out / split / "masks" / f"{sample.name}.png")
            if with_images:
                write_png_atomic(sample.image, out / split / "images" / f"{sample.name}.png")
        written[split] = len(dataset)
    if not written:
        raise OdsSamError(f"{root}: no images to convert in splits {', '.join(splits)}")
    return written
