"""GlaS (Warwick QU): ``train_N.bmp`` + ``train_N_anno.bmp``, ``testA_N``, ``testB_N``.

Annotations are instance-label maps: every gland has its own label, > 0 is gland.
Protocol: 85 train / 80 test (testA 60 + testB 20), images at 224x224. ``category``
``testA`` or ``testB`` restricts the test split to one part.
"""

from __future__ import annotations

import re
from pathlib import Path

from odssam.data.index import DatasetIndex, Entry, IndexOptions, check_root, list_images
from odssam.data.datasets.common import short_list
from odssam.errors import OdsSamError

NAME = "glas"
PARTS = {"train": 85, "testA": 60, "testB": 20}
WRAPPERS = ("Warwick QU Dataset (Released 2016_07_08)", "Warwick_QU_Dataset", "GlaS")
_FILE_NAME = re.compile(r"^(train|testA|testB)_(\d+)$")
_ANNOTATION_SUFFIX = "_anno"


def _find_base(path: Path) -> Path:
    def has_files(folder: Path) -> bool:
        return any(folder.glob("train_*.bmp")) or any(folder.glob("test*_*.bmp"))

    if has_files(path):
        return path
    for wrapper in WRAPPERS:
        if (path / wrapper).is_dir() and has_files(path / wrapper):
            return path / wrapper
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if has_files(child):
            return child
    return path


def _sort_key(stem: str) -> tuple[int, int]:
    match = _FILE_NAME.match(stem)
    part = list(PARTS).index(match.group(1)) if match else 99
    return part, int(match.group(2)) if match else 0


def index_glas(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index the folder holding the GlaS ``.bmp`` files (or its wrapping folder)."""
    if category and category not in ("testA", "testB"):
        raise OdsSamError(f"GlaS category must be 'testA' or 'testB', got '{category}'")
    path, index = check_root(root, NAME)
    index.category = category
    if index.issues:
        return index
    base = _find_base(path)
    index.root = base
    images = list_images(base, index, None, skip_suffix=_ANNOTATION_SUFFIX)
    annotations = list_images(base, index, None, suffix=_ANNOTATION_SUFFIX)
    unknown = sorted(s for s in images if not _FILE_NAME.match(s))
    if unknown:
        index.warn(
            f"{len(unknown)} images not named train_N/testA_N/testB_N (ignored): {short_list(unknown)}",
            base,
        )
    test_parts = (category,) if category else ("testA", "testB")
    index.splits = {"train": [], "test": []}
    for stem in sorted((s for s in images if _FILE_NAME.match(s)), key=_sort_key):
        part = _FILE_NAME.match(stem).group(1)
        split = "train" if part == "train" else "test"
        if split == "test" and part not in test_parts:
            continue
        if stem not in annotations:
            index.error(f"no annotation {stem}{_ANNOTATION_SUFFIX}.bmp for this image", images[stem], split)
            continue
        index.splits[split].append(Entry(stem, images[stem], annotations[stem], "labels"))
    for stem in sorted(set(annotations) - set(images)):
        index.warn("annotation without an image (ignored)", annotations[stem])
    if not index.splits["train"] and not index.splits["test"]:
        index.error("no GlaS images (expected train_N.bmp with train_N_anno.bmp)", base)
    index.expected = {"train": PARTS["train"], "test": sum(PARTS[p] for p in test_parts)}
    index.protocol = {"split": f"GlaS: train / {' + '.join(test_parts)}", "paper_image_size": 224}
    return index
