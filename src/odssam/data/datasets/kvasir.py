"""Kvasir-SEG: ``images/*.jpg`` + ``masks/*.jpg`` with PraNet's 900/100 split.

The masks are JPEG (RGB, with compression noise around the edges): binarised at > 127
on their luma. Image sizes vary from 332x487 to 1920x1072.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.datasets.common import apply_name_lists, locate, reject_category
from odssam.data.index import DatasetIndex, IndexOptions, check_root, list_images, require_dir
from odssam.data.splits import packaged_split_names

NAME = "kvasir"
WRAPPERS = ("Kvasir-SEG", "kvasir-seg")


def index_kvasir(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index a Kvasir-SEG folder (the folder holding ``images/`` and ``masks/``, or its parent)."""
    reject_category(NAME, category)
    path, index = check_root(root, NAME)
    if index.issues:
        return index
    base = locate(path, WRAPPERS, ("images",))
    index.root = base
    images_dir = require_dir(base, ("images",), index, "images")
    masks_dir = require_dir(base, ("masks",), index, "masks")
    if images_dir is None or masks_dir is None:
        return index
    images = list_images(images_dir, index, None)
    masks = list_images(masks_dir, index, None)
    if not images:
        index.error("no image files", images_dir)
        return index
    lists = {split: packaged_split_names(f"kvasir_{split}") for split in ("train", "test")}
    apply_name_lists(index, images, masks, images_dir, masks_dir, lists, "PraNet Kvasir-SEG")
    index.protocol = {"split": "PraNet Kvasir-SEG lists (900 train / 100 test)"}
    return index
