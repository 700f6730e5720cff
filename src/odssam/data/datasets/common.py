"""Helpers shared by the dataset layouts."""

from __future__ import annotations

from pathlib import Path

from odssam.data.index import (
    DatasetIndex, Entry, check_root, find_dir, list_images, pair_images_with_masks, report_orphan_masks, require_dir,
)
from odssam.data.splits import packaged_split_names
from odssam.errors import OdsSamError

# Names shown before "... and N more" in messages listing files.
MESSAGE_LIST_LIMIT = 5


def short_list(names: list[str], limit: int = MESSAGE_LIST_LIMIT) -> str:
    """``a, b, c and 4 more``."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def locate(root: Path, wrappers: tuple[str, ...], marker: tuple[str, ...]) -> Path:
    """The folder holding a layout: ``root`` itself or one of its ``wrappers`` sub-folders.

    Downloads often add a wrapping folder (``Kvasir-SEG/``, ``PNG/``); the layout is
    recognised by a ``marker`` sub-folder. Falls back to ``root`` so that the missing
    folders are reported relative to what the user gave.
    """
    for wrapper in ("", *wrappers):
        candidate = root
        for part in Path(wrapper).parts:
            candidate = find_dir(candidate, part) if candidate is not None else None
        if candidate is not None and find_dir(candidate, *marker) is not None:
            return candidate
    return root


def reject_category(dataset: str, category: str | None) -> None:
    """Raise if a category is given to a dataset that has none."""
    if category:
        raise OdsSamError(f"dataset '{dataset}' has no categories (got category '{category}')")


def apply_name_lists(
    index: DatasetIndex,
    images: dict[str, Path],
    masks: dict[str, Path],
    images_dir: Path,
    masks_dir: Path,
    lists: dict[str, list[str]],
    list_label: str,
) -> None:
    """Fill ``index.splits`` from fixed name lists (PraNet's Kvasir-SEG / CVC-ClinicDB split).

    Listed images absent from the folder are a warning (partial copies are common: only
    the training part, say); images in no list are ignored with a warning.
    """
    for split, names in lists.items():
        present = {name: images[name] for name in names if name in images}
        absent = [name for name in names if name not in images]
        if absent:
            index.warn(
                f"{len(absent)} of the {len(names)} images of the {list_label} {split} list "
                f"are not in this folder: {short_list(absent)}",
                images_dir,
                split,
            )
        index.splits[split] = pair_images_with_masks(present, masks, masks_dir, index, split)
        index.expected[split] = len(names)
    listed = {name for names in lists.values() for name in names}
    unlisted = sorted(set(images) - listed)
    if unlisted:
        index.warn(
            f"{len(unlisted)} images are in no {list_label} list and are ignored: {short_list(unlisted)}",
            images_dir,
        )
    report_orphan_masks(images, masks, index)


def index_pranet_listed(
    root: str | Path,
    category: str | None,
    dataset: str,
    wrappers: tuple[str, ...],
    image_dirs: tuple[str, ...],
    mask_dirs: tuple[str, ...],
    list_label: str,
    protocol: str,
) -> DatasetIndex:
    """Index an images folder + masks folder split by PraNet's packaged name lists.

    Args:
        root: The folder the user gave (the layout itself or a wrapper of it).
        category: Must be empty: these datasets have none.
        dataset: Registry name; the packaged lists are ``<dataset>_train`` and ``<dataset>_test``.
        wrappers: Sub-folder paths downloads wrap the layout in (see :func:`locate`).
        image_dirs: Accepted names of the images folder (the first marks the layout).
        mask_dirs: Accepted names of the masks folder.
        list_label: How messages name the lists (``"PraNet Kvasir-SEG"``).
        protocol: Description stored in ``index.protocol["split"]``.
    """
    reject_category(dataset, category)
    path, index = check_root(root, dataset)
    if index.issues:
        return index
    base = locate(path, wrappers, image_dirs)
    index.root = base
    images_dir = require_dir(base, image_dirs, index, "images")
    masks_dir = require_dir(base, mask_dirs, index, "masks")
    if images_dir is None or masks_dir is None:
        return index
    images = list_images(images_dir, index, None)
    masks = list_images(masks_dir, index, None)
    if not images:
        index.error("no image files", images_dir)
        return index
    lists = {split: packaged_split_names(f"{dataset}_{split}") for split in ("train", "test")}
    apply_name_lists(index, images, masks, images_dir, masks_dir, lists, list_label)
    index.protocol = {"split": protocol}
    return index


def entries_by_name(entries: list[Entry]) -> dict[str, Entry]:
    """``{entry.name: entry}``, in the entries' order."""
    return {entry.name: entry for entry in entries}
