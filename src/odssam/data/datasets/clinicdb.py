"""CVC-ClinicDB: ``Original/N.tif`` + ``Ground Truth/N.tif`` with PraNet's 550/62 split.

The RGB TIFFs declare a photometric interpretation PIL rejects (``tifffile`` reads
them); the PNG copies that circulate (``PNG/Original``, ``PNG/Ground Truth``) work too.
A few masks have grey pixels: binarised at > 127.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.datasets.common import apply_name_lists, locate, reject_category
from odssam.data.index import DatasetIndex, IndexOptions, check_root, list_images, require_dir
from odssam.data.splits import packaged_split_names

NAME = "clinicdb"
WRAPPERS = ("CVC-ClinicDB", "TIF", "PNG", "CVC-ClinicDB/TIF", "CVC-ClinicDB/PNG")
IMAGE_DIRS = ("Original",)
MASK_DIRS = ("Ground Truth", "GroundTruth", "Ground_Truth")


def index_clinicdb(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index a CVC-ClinicDB folder (the one holding ``Original/``, or a wrapper of it)."""
    reject_category(NAME, category)
    path, index = check_root(root, NAME)
    if index.issues:
        return index
    base = locate(path, WRAPPERS, IMAGE_DIRS)
    index.root = base
    images_dir = require_dir(base, IMAGE_DIRS, index, "images")
    masks_dir = require_dir(base, MASK_DIRS, index, "masks")
    if images_dir is None or masks_dir is None:
        return index
    images = list_images(images_dir, index, None)
    masks = list_images(masks_dir, index, None)
    if not images:
        index.error("no image files", images_dir)
        return index
    lists = {split: packaged_split_names(f"clinicdb_{split}") for split in ("train", "test")}
    apply_name_lists(index, images, masks, images_dir, masks_dir, lists, "PraNet CVC-ClinicDB")
    index.protocol = {"split": "PraNet CVC-ClinicDB lists (550 train / 62 test)"}
    return index
