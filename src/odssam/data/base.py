"""The dataset class shared by every layout: lazy, per-item decoding into :class:`Sample`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from odssam.data.image_io import (
    file_kind_problem,
    read_image,
    read_label_mask,
    read_mask_values,
    resize_image,
    resize_mask,
)
from odssam.data.index import DatasetIndex, Entry
from odssam.data.mask_audit import MaskFinding, audit_mask
from odssam.data.polygons import read_polygon_mask
from odssam.data.sample import Sample
from odssam.data.splits import SPLIT_FILE_FORMAT
from odssam.errors import OdsSamError


@functools.lru_cache(maxsize=64)
def _packed_polygon_mask(path: str, modified_ns: int, height: int, width: int) -> np.ndarray:
    # XML parsing dominates MoNuSeg decoding; a bit-packed mask is 1/8 MB per 1000x1000 tile.
    return np.packbits(read_polygon_mask(path, height, width))


def read_entry_mask(
    entry: Entry, height: int, width: int, findings: list[MaskFinding] | None = None
) -> np.ndarray:
    """The HxW bool mask of ``entry`` for an image of ``height x width``.

    Args:
        entry: What to read.
        height: Image height the mask must have.
        width: Image width.
        findings: If given, what :func:`odssam.data.mask_audit.audit_mask` finds wrong
            with a binary mask's values is appended to it (``odssam data check``).

    Raises:
        OdsSamError: If the mask file is unreadable or its size differs from the image's.
    """
    if entry.mask_kind == "empty" or entry.mask_path is None:
        return np.zeros((height, width), dtype=bool)
    if entry.mask_kind == "polygons":
        problem = file_kind_problem(entry.mask_path)
        if problem is not None:
            raise OdsSamError(f"{entry.mask_path}: annotation {problem}")
        stat = entry.mask_path.stat()
        packed = _packed_polygon_mask(str(entry.mask_path), stat.st_mtime_ns, height, width)
        return np.unpackbits(packed, count=height * width).reshape(height, width).astype(bool)
    if entry.mask_kind == "labels":
        mask = read_label_mask(entry.mask_path)
    else:
        values = read_mask_values(entry.mask_path)
        if findings is not None:
            findings.extend(audit_mask(values))
        mask = values.binarize()
    if mask.shape != (height, width):
        raise OdsSamError(
            f"size mismatch: mask {entry.mask_path} is {mask.shape[1]}x{mask.shape[0]} (WxH) "
            f"but image {entry.image_path} is {width}x{height}"
        )
    return mask


def _naming_the_file(path: Path | None, error: Exception) -> OdsSamError:
    """``error`` as an :class:`OdsSamError` whose message names ``path`` (or a file)."""
    message = str(error) if isinstance(error, OdsSamError) else f"cannot read ({type(error).__name__}: {error})"
    if path is None or str(path) in message:
        return error if isinstance(error, OdsSamError) else OdsSamError(message)
    return OdsSamError(f"{path}: {message}")


def load_entry(
    entry: Entry, image_size: int | None = None, *, mask_findings: list[MaskFinding] | None = None
) -> Sample:
    """Decode one entry; resize to ``image_size`` squared (bilinear image, nearest mask) if given.

    Args:
        entry: What to read.
        image_size: Square output side, or ``None`` to keep the image's size.
        mask_findings: If given, remarks about the mask's values are appended to it
            (see :func:`read_entry_mask`).

    Raises:
        OdsSamError: If the image or mask cannot be read; the message names the file.
    """
    try:
        image = read_image(entry.image_path)
    except Exception as error:  # noqa: BLE001 - every decoding failure is reported with its file
        raise _naming_the_file(entry.image_path, error) from error
    height, width = image.shape[:2]
    try:
        mask = read_entry_mask(entry, height, width, mask_findings)
    except Exception as error:  # noqa: BLE001
        raise _naming_the_file(entry.mask_path, error) from error
    if image_size is not None:
        image = resize_image(image, image_size)
        mask = resize_mask(mask, image_size)
    return Sample(
        image=image,
        mask=mask,
        name=entry.name,
        original_size=(height, width),
        path=str(entry.image_path),
        mask_path=None if entry.mask_path is None else str(entry.mask_path),
    )


class SegmentationDataset(Dataset):
    """One split of a dataset; items are decoded lazily into :class:`Sample`.

    Use :func:`odssam.data.build_dataset` rather than constructing this directly.

    Attributes:
        dataset: Registry name (``kvasir`` ...).
        split: ``train``, ``val`` or ``test``.
        root: The dataset folder.
        category: MVTec AD category or PraNet test set, if any.
        entries: What each item is read from.
        names: Sample names, in item order.
        image_size: Square output size, or ``None`` to keep each image's size.
        unavailable: ``(name, reason)`` of the split-file entries left out because the
            folder lacks them (``build_dataset(..., skip_missing=True)``).
    """

    def __init__(
        self,
        index: DatasetIndex,
        split: str,
        entries: list[Entry],
        partition: dict[str, list[str]],
        image_size: int | None = None,
        protocol: dict[str, Any] | None = None,
        unavailable: list[tuple[str, str]] | None = None,
    ) -> None:
        self.dataset = index.dataset
        self.split = split
        self.root = index.root
        self.category = index.category
        self.entries = list(entries)
        self.names = [entry.name for entry in self.entries]
        self.image_size = image_size
        self._partition = {key: list(value) for key, value in partition.items()}
        self._protocol = dict(protocol or {})
        self.unavailable = list(unavailable or [])

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: int) -> Sample:
        return load_entry(self.entries[item], self.image_size)

    def split_record(self) -> dict[str, Any]:
        """The whole train/val/test partition this split belongs to, for a JSON split file.

        Pass the written file back as ``build_dataset(..., split_file=...)`` to reuse it.
        """
        record: dict[str, Any] = {
            "format": SPLIT_FILE_FORMAT,
            "dataset": self.dataset,
            "category": self.category,
            "root": str(self.root),
            "protocol": self._protocol,
            "counts": {key: len(value) for key, value in self._partition.items()},
            "splits": self._partition,
        }
        if self.dataset == "mvtec":
            record["note"] = (
                "ODS-SAM's MVTec AD train/test split of abnormal images is not public; "
                "this is odssam's seeded split, per defect type."
            )
        return record

    def __repr__(self) -> str:
        where = f"{self.dataset}/{self.category}" if self.category else self.dataset
        return (
            f"{type(self).__name__}({where}, split={self.split!r}, {len(self)} samples, "
            f"root={str(self.root)!r})"
        )

