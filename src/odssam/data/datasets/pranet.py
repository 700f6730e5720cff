"""PraNet's polyp folders: ``TrainDataset/`` (1450 images) and five ``TestDataset/`` sets.

``TrainDataset/{image,mask}/`` and ``TestDataset/<set>/{images,masks}/`` hold PNGs
(either folder name, singular or plural, is accepted in both places). The train set
mixes Kvasir-SEG and CVC-ClinicDB; the test sets are those of the paper's polyp tables.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.index import (
    DatasetIndex,
    IndexOptions,
    check_root,
    find_dir,
    list_images,
    pair_images_with_masks,
    report_orphan_masks,
    require_dir,
)
from odssam.data.datasets.common import locate
from odssam.errors import OdsSamError

NAME = "pranet"
TRAIN_COUNT = 1450
TEST_SETS = {
    "Kvasir": 100,
    "CVC-ClinicDB": 62,
    "CVC-ColonDB": 380,
    "ETIS-LaribPolypDB": 196,
    "CVC-300": 60,
}
ALIASES = {
    "kvasir": "Kvasir",
    "kvasir-seg": "Kvasir",
    "cvc-clinicdb": "CVC-ClinicDB",
    "clinicdb": "CVC-ClinicDB",
    "cvc-colondb": "CVC-ColonDB",
    "colondb": "CVC-ColonDB",
    "etis-laribpolypdb": "ETIS-LaribPolypDB",
    "etis": "ETIS-LaribPolypDB",
    "cvc-300": "CVC-300",
    "cvc300": "CVC-300",
    "endoscene": "CVC-300",
}
IMAGE_DIRS = ("images", "image", "imgs")
MASK_DIRS = ("masks", "mask", "gt", "GT")


def resolve_test_set(category: str) -> str:
    """Canonical test-set name for ``category`` (case-insensitive, short aliases allowed)."""
    name = ALIASES.get(category.lower())
    if name is None:
        raise OdsSamError(
            f"unknown PraNet test set '{category}'; choose one of {', '.join(TEST_SETS)}"
        )
    return name


def _index_folder(folder: Path, index: DatasetIndex, split: str) -> None:
    images_dir = require_dir(folder, IMAGE_DIRS, index, "images")
    masks_dir = require_dir(folder, MASK_DIRS, index, "masks")
    if images_dir is None or masks_dir is None:
        return
    images = list_images(images_dir, index, split)
    masks = list_images(masks_dir, index, split)
    if not images:
        index.error("no image files", images_dir, split)
    index.splits[split] = pair_images_with_masks(images, masks, masks_dir, index, split)
    report_orphan_masks(images, masks, index, split)


def index_pranet(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index the folder holding ``TrainDataset/`` and ``TestDataset/``.

    With ``category`` the splits are ``train`` and ``test`` (that test set); without,
    every test set found is indexed under ``test/<set>``.
    """
    wanted = resolve_test_set(category) if category else None
    path, index = check_root(root, NAME)
    index.category = wanted
    if index.issues:
        return index
    base = locate(path, ("PraNet", "data"), ("TrainDataset", "TestDataset"))
    index.root = base
    index.protocol = {"split": "PraNet: TrainDataset (1450) / TestDataset sets"}
    train_dir = find_dir(base, "TrainDataset")
    if train_dir is None:
        index.error("no TrainDataset folder", base, "train")
    else:
        _index_folder(train_dir, index, "train")
        index.expected["train"] = TRAIN_COUNT
    test_root = find_dir(base, "TestDataset")
    if test_root is None:
        index.error("no TestDataset folder", base, "test")
        return index
    sets = [wanted] if wanted else list(TEST_SETS)
    for test_set in sets:
        key = "test" if wanted else f"test/{test_set}"
        folder = find_dir(test_root, test_set)
        if folder is None:
            message = f"no '{test_set}' test set"
            if wanted:
                index.error(message, test_root, key)
            else:
                index.warn(message, test_root, key)
            continue
        _index_folder(folder, index, key)
        index.expected[key] = TEST_SETS[test_set]
    return index
