"""MVTec AD, official layout, under the supervised protocol of ODS-SAM.

``<category>/test/<defect>/NNN.png`` with ``<category>/ground_truth/<defect>/NNN_mask.png``;
``test/good`` has no masks (empty by definition); ``train/good`` is defect-free only.

The supervised protocol trains on abnormal images, so each category's abnormal test
images are split into train and test with a fixed seed, per defect type so that both
sides see every defect (``round(n * test_fraction)`` of each type go to test). The
paper's own split is not public: this one is odssam's, and it is written to a split
file next to each run so it can be reused. With ``include_good`` the ``test/good``
images are split the same way and added with empty masks; ``train/good`` is not used.
Sample names are ``<defect>_<NNN>``.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.index import DatasetIndex, Entry, IndexOptions, check_root, find_dir, list_images, report_orphan_masks
from odssam.data.datasets.common import entries_by_name, short_list
from odssam.data.splits import fraction_split
from odssam.errors import OdsSamError

NAME = "mvtec"
CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
GOOD = "good"
MASK_SUFFIX = "_mask"


def _is_category_dir(folder: Path) -> bool:
    return folder.is_dir() and find_dir(folder, "test") is not None


def find_categories(root: Path) -> list[str]:
    """Category folders under an MVTec AD root (any folder holding ``test/``)."""
    if not root.is_dir():
        return []
    return sorted(child.name for child in root.iterdir() if _is_category_dir(child))


def _category_entries(folder: Path, index: DatasetIndex, key: str) -> dict[str, list[Entry]]:
    """Entries of one category per defect type (``good`` included, with empty masks)."""
    test_dir = find_dir(folder, "test")
    truth_dir = find_dir(folder, "ground_truth")
    by_defect: dict[str, list[Entry]] = {}
    defects = sorted(d.name for d in test_dir.iterdir() if d.is_dir())
    if not [d for d in defects if d != GOOD]:
        index.error("no defect folders (expected test/<defect>/)", test_dir, key)
    if truth_dir is None and [d for d in defects if d != GOOD]:
        index.error("no ground_truth folder", folder, key)
        return by_defect
    for defect in defects:
        images = list_images(test_dir / defect, index, key)
        if not images:
            index.warn("no image files", test_dir / defect, key)
            continue
        if defect == GOOD:
            by_defect[defect] = [Entry(f"{GOOD}_{s}", p, None, "empty") for s, p in images.items()]
            continue
        mask_dir = truth_dir / defect
        if not mask_dir.is_dir():
            index.error(f"no mask folder {mask_dir} for this defect type", test_dir / defect, key)
            continue
        masks = list_images(mask_dir, index, key, suffix=MASK_SUFFIX)
        entries = []
        for stem, image_path in images.items():
            if stem not in masks:
                index.error(f"no mask {mask_dir / (stem + MASK_SUFFIX)}.png for this image", image_path, key)
                continue
            entries.append(Entry(f"{defect}_{stem}", image_path, masks[stem], "binary"))
        report_orphan_masks(images, masks, index, key)
        by_defect[defect] = entries
    return by_defect


def _split_category(
    folder: Path, category: str, index: DatasetIndex, options: IndexOptions, prefix: str
) -> None:
    train_key, test_key = f"{prefix}train", f"{prefix}test"
    by_defect = _category_entries(folder, index, test_key)
    train: list[Entry] = []
    test: list[Entry] = []
    for defect, entries in by_defect.items():
        if defect == GOOD and not options.include_good:
            continue
        lookup = entries_by_name(entries)
        train_names, test_names = fraction_split(
            list(lookup), options.test_fraction, options.split_seed, category, defect
        )
        train += [lookup[name] for name in train_names]
        test += [lookup[name] for name in test_names]
    index.splits[train_key] = train
    index.splits[test_key] = test


def index_mvtec(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index one MVTec AD category (``root/<category>`` or ``root`` as the category folder).

    Without ``category`` and with ``options.every_category``, every category found is
    indexed under ``<category>/train`` and ``<category>/test``.
    """
    path, index = check_root(root, NAME)
    index.category = category
    index.shared_pool = True
    index.protocol = {
        "split": "seeded per-defect split of abnormal test images (the paper's split is not public)",
        "split_seed": options.split_seed,
        "test_fraction": options.test_fraction,
        "include_good": options.include_good,
    }
    if index.issues:
        return index
    if category is None and _is_category_dir(path):
        category = index.category = path.name
        path = path.parent
    if category is None:
        found = find_categories(path)
        if not options.every_category:
            raise OdsSamError(
                f"{path}: MVTec AD needs a category; found: {', '.join(found) or 'none'}"
            )
        if not found:
            index.error(f"no MVTec AD category folders (expected e.g. {path / 'bottle' / 'test'})", path)
            return index
        absent = [c for c in CATEGORIES if c not in found]
        index.notes.append(
            f"categories found: {', '.join(found)}"
            + (f"; absent of the 15 MVTec AD categories: {short_list(absent, 15)}" if absent else "")
        )
        for name in found:
            _split_category(path / name, name, index, options, f"{name}/")
        return index
    folder = path / category
    if not _is_category_dir(folder):
        if _is_category_dir(path) and path.name == category:
            folder = path
        else:
            found = find_categories(path)
            raise OdsSamError(
                f"{path}: no MVTec AD category '{category}' (with a test/ folder); "
                f"found: {', '.join(found) or 'none'}"
            )
    index.root = folder.parent
    _split_category(folder, category, index, options, "")
    if not index.splits["train"] and not index.splits["test"] and not index.errors():
        index.error("no abnormal images with masks", folder)
    return index
