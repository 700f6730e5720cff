"""What a dataset folder holds: entries per split and the problems found while listing it.

Each dataset module turns its on-disk layout into a :class:`DatasetIndex` by listing
files only (no decoding), so building one is fast; decoding problems surface later,
per sample, or all at once in ``odssam data check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from odssam.data.image_io import file_kind_problem, is_image_file


@dataclass(frozen=True)
class IndexOptions:
    """Protocol settings that decide which files land in which split.

    Attributes:
        include_good: MVTec AD: add defect-free ``test/good`` images (empty masks).
        split_seed: Seed of the seeded splits (MVTec AD abnormal images, flat folders).
        test_fraction: Fraction of images that a seeded split keeps for testing.
        every_category: Index every MVTec AD category / PraNet test set found, under
            ``<category>/<split>`` or ``test/<set>`` keys (what ``odssam data check`` does
            when no category is given).
    """

    include_good: bool = False
    split_seed: int = 0
    test_fraction: float = 0.5
    every_category: bool = False


@dataclass(frozen=True)
class Entry:
    """One image of a dataset and where its mask comes from.

    Attributes:
        name: Sample name, unique within its split.
        image_path: Image file.
        mask_path: Mask, label map or XML file; ``None`` when ``mask_kind`` is ``"empty"``.
        mask_kind: ``binary`` (mask image), ``labels`` (instance labels, > 0 is
            foreground), ``polygons`` (MoNuSeg XML) or ``empty`` (defect-free image).
    """

    name: str
    image_path: Path
    mask_path: Path | None
    mask_kind: str = "binary"


@dataclass
class Issue:
    """A problem (``error``) or a remark (``warning``) about a dataset folder.

    Attributes:
        level: ``error`` makes the folder unusable as is; ``warning`` does not.
        message: What is wrong, in words.
        path: The file or folder concerned, if any.
        split: The split it affects (``None``: the whole dataset).
    """

    level: str
    message: str
    path: str | None = None
    split: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "path": self.path, "split": self.split, "message": self.message}


@dataclass
class DatasetIndex:
    """The entries of a dataset folder per protocol split, and what is wrong with it.

    Attributes:
        dataset: Registry name.
        root: The folder the layout was found in.
        category: MVTec AD category or PraNet test set, if any.
        splits: Protocol splits before any validation hold-out: ``train`` and ``test``
            (PraNet check indexes use ``test/<set>`` keys).
        issues: Problems and remarks found while listing.
        protocol: Settings that shaped the split (written to split files).
        shared_pool: Whether a split file may move a name between train and test (the
            seeded splits of MVTec AD and flat folders) or not (fixed protocols, where
            a name may exist in both, e.g. PraNet train and test sets).
        expected: Full-dataset image count per split, where the protocol fixes it.
        notes: Facts worth printing with a check (mask sources, missing test data ...).
    """

    dataset: str
    root: Path
    category: str | None = None
    splits: dict[str, list[Entry]] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    shared_pool: bool = False
    expected: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def error(self, message: str, path: Path | str | None = None, split: str | None = None) -> None:
        self.issues.append(Issue("error", message, None if path is None else str(path), split))

    def warn(self, message: str, path: Path | str | None = None, split: str | None = None) -> None:
        self.issues.append(Issue("warning", message, None if path is None else str(path), split))

    def errors(self, split: str | None = None) -> list[Issue]:
        """Errors affecting ``split`` (or the whole dataset); all errors if ``split`` is None."""
        return [
            issue
            for issue in self.issues
            if issue.level == "error" and (split is None or issue.split in (None, split))
        ]


# --------------------------------------------------------------------------- discovery


def find_dir(parent: Path, *names: str) -> Path | None:
    """First sub-folder of ``parent`` named one of ``names`` (case-insensitive), else None."""
    if not parent.is_dir():
        return None
    for name in names:
        candidate = parent / name
        if candidate.is_dir():
            return candidate
    lowered = {name.lower() for name in names}
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower() in lowered:
            return child
    return None


def list_images(
    folder: Path, index: DatasetIndex, split: str | None, suffix: str = "", skip_suffix: str = ""
) -> dict[str, Path]:
    """Image files of ``folder`` by stem (with ``suffix`` removed from the stem).

    Two files with one stem (``1.png`` and ``1.tif``) are an error: which one is meant?
    Files whose stem does not end with ``suffix``, or ends with ``skip_suffix``, are skipped.
    Entries named like images that are not regular files (folders, named pipes, sockets,
    broken links, link loops) are errors, found without opening them (see
    :func:`regular_files`).
    """
    def wanted(path: Path) -> bool:
        stem = path.stem
        return (
            is_image_file(path)
            and not (skip_suffix and stem.endswith(skip_suffix))
            and (not suffix or stem.endswith(suffix))
        )

    found: dict[str, Path] = {}
    for path in regular_files(folder, index, split, wanted):
        stem = path.stem[: -len(suffix)] if suffix else path.stem
        if stem in found:
            index.error(f"two files for '{stem}': {found[stem].name} and {path.name}", folder, split)
            continue
        found[stem] = path
    return found


def regular_files(
    folder: Path, index: DatasetIndex, split: str | None, wanted: Callable[[Path], bool]
) -> Iterator[Path]:
    """Regular files of ``folder`` whose name ``wanted`` accepts, in name order.

    An accepted name that is not a regular file is recorded as an error (file name and
    reason) and skipped, never opened: reading a named pipe would block forever.

    Args:
        folder: The folder to list.
        index: Where problems are recorded.
        split: The split they affect.
        wanted: Which names to consider (``is_image_file``, ``*.xml`` ...).
    """
    try:
        paths = sorted(folder.iterdir())
    except OSError as error:
        index.error(f"cannot list the folder ({error.strerror or error})", folder, split)
        return
    for path in paths:
        if not wanted(path):
            continue
        problem = file_kind_problem(path)
        if problem is not None:
            index.error(f"{problem} (skipped)", path, split)
            continue
        yield path


def pair_images_with_masks(
    images: dict[str, Path],
    masks: dict[str, Path],
    mask_dir: Path,
    index: DatasetIndex,
    split: str | None,
    mask_kind: str = "binary",
) -> list[Entry]:
    """Entries for images with a mask of the same stem; an image without one is an error."""
    entries = []
    for stem, image_path in images.items():
        mask_path = masks.get(stem)
        if mask_path is None:
            index.error(f"no mask for this image in {mask_dir}", image_path, split)
            continue
        entries.append(Entry(stem, image_path, mask_path, mask_kind))
    return entries


def report_orphan_masks(
    images: dict[str, Path], masks: dict[str, Path], index: DatasetIndex, split: str | None = None
) -> None:
    """Warn about mask files whose image is missing (they are ignored)."""
    for stem in sorted(set(masks) - set(images)):
        index.warn("mask without an image (ignored)", masks[stem], split)


def require_dir(parent: Path, names: tuple[str, ...], index: DatasetIndex, what: str) -> Path | None:
    """Sub-folder of ``parent`` named one of ``names``, or None after recording an error."""
    folder = find_dir(parent, *names)
    if folder is None:
        index.error(f"no {what} folder (expected {' or '.join(repr(n) for n in names)})", parent)
    return folder


def check_root(root: str | Path, index_dataset: str) -> tuple[Path, DatasetIndex]:
    """The root as a Path and a fresh index; records an error if it is not a folder."""
    path = Path(root).expanduser()
    index = DatasetIndex(index_dataset, path)
    if not str(root):
        index.error("no dataset root given")
    elif not path.exists():
        index.error("dataset folder not found", path)
    elif not path.is_dir():
        index.error("dataset root is not a folder", path)
    return path, index
