"""Any folder of images and binary masks, for users' own data.

Two layouts: ``train/{images,masks}/`` + ``test/{images,masks}/`` (fixed split), or a
flat ``images/`` + ``masks/`` pair split by a seeded ``test_fraction`` (recorded in the
run's split file). A mask matches its image by file stem, ``<stem>.*`` or
``<stem>_mask.*``; any image format is accepted for either.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.datasets.common import entries_by_name, reject_category
from odssam.data.index import DatasetIndex, Entry, IndexOptions, check_root, find_dir, list_images, require_dir
from odssam.data.splits import fraction_split

NAME = "folder"
MASK_SUFFIX = "_mask"


def _index_pair(folder: Path, index: DatasetIndex, split: str) -> list[Entry]:
    images_dir = require_dir(folder, ("images", "image", "imgs"), index, "images")
    masks_dir = require_dir(folder, ("masks", "mask", "labels", "gt"), index, "masks")
    if images_dir is None or masks_dir is None:
        return []
    images = list_images(images_dir, index, split)
    if not images:
        index.error("no image files", images_dir, split)
        return []
    masks = list_images(masks_dir, index, split)
    entries, used = [], set()
    for stem, image_path in images.items():
        mask_stem = stem if stem in masks else f"{stem}{MASK_SUFFIX}"
        if mask_stem not in masks:
            index.error(
                f"no mask for this image in {masks_dir} (expected {stem}.* or {stem}{MASK_SUFFIX}.*)",
                image_path,
                split,
            )
            continue
        used.add(mask_stem)
        entries.append(Entry(stem, image_path, masks[mask_stem], "binary"))
    for stem in sorted(set(masks) - used):
        index.warn("mask without an image (ignored)", masks[stem], split)
    return entries


def index_folder(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index ``root/{train,test}/{images,masks}`` or a flat ``root/{images,masks}``."""
    reject_category(NAME, category)
    path, index = check_root(root, NAME)
    if index.issues:
        return index
    train_dir, test_dir = find_dir(path, "train"), find_dir(path, "test")
    if train_dir is not None or test_dir is not None:
        index.protocol = {"split": "train/ and test/ folders"}
        for split, folder in (("train", train_dir), ("test", test_dir)):
            if folder is None:
                index.warn(f"no {split}/ folder: the {split} split is empty", path, split)
                index.splits[split] = []
            else:
                index.splits[split] = _index_pair(folder, index, split)
        return index
    entries = _index_pair(path, index, "train")
    lookup = entries_by_name(entries)
    train, test = fraction_split(list(lookup), options.test_fraction, options.split_seed, NAME)
    index.splits = {"train": [lookup[n] for n in train], "test": [lookup[n] for n in test]}
    index.shared_pool = True
    index.protocol = {
        "split": "seeded split of one images/ + masks/ folder",
        "split_seed": options.split_seed,
        "test_fraction": options.test_fraction,
    }
    return index
