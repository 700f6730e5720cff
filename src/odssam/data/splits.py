"""Split protocols: packaged PraNet name lists, seeded splits and split files.

A split file is JSON written next to a run so the exact partition can be reused::

    {"format": "odssam-split/1", "dataset": "mvtec", "category": "bottle",
     "protocol": {...}, "splits": {"train": [names], "val": [names], "test": [names]}}

Only ``splits`` is required when reading one back, so users can write their own.
"""

from __future__ import annotations

import json
import math
import random
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from odssam.errors import OdsSamError
from odssam.utils.atomic import atomic_write_text

SPLIT_FILE_FORMAT = "odssam-split/1"
SPLIT_NAMES = ("train", "val", "test")


def packaged_split_names(list_name: str) -> list[str]:
    """Sample names of a packaged split list, e.g. ``"kvasir_train"`` (900 names).

    Raises:
        OdsSamError: If no such list ships with odssam.
    """
    resource = resources.files("odssam.data").joinpath("splits", f"{list_name}.txt")
    if not resource.is_file():
        raise OdsSamError(f"no packaged split list named '{list_name}'")
    lines = resource.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _rng(seed: int, *keys: str) -> random.Random:
    # String seeds are hashed with SHA-512 by ``random``: stable across runs and versions.
    return random.Random(":".join([str(seed), *keys]))


def seeded_shuffle(names: Iterable[str], seed: int, *keys: str) -> list[str]:
    """Sorted ``names`` shuffled by a generator seeded with ``seed`` and ``keys``."""
    shuffled = sorted(names)
    _rng(seed, *keys).shuffle(shuffled)
    return shuffled


def hold_out_validation(names: list[str], val_count: int, seed: int) -> tuple[list[str], list[str]]:
    """Split training names into ``(train, val)``: val is the last ``val_count`` of a seeded shuffle.

    Both lists keep the order of ``names``.

    Raises:
        OdsSamError: If ``val_count`` is negative or leaves no training images.
    """
    if val_count < 0:
        raise OdsSamError(f"val_count must be >= 0, got {val_count}")
    if val_count == 0:
        return list(names), []
    if val_count >= len(names):
        raise OdsSamError(
            f"val_count={val_count} leaves no training images (the train split has {len(names)})"
        )
    held_out = set(seeded_shuffle(names, seed, "val")[-val_count:])
    return [n for n in names if n not in held_out], [n for n in names if n in held_out]


def fraction_split(
    names: list[str], test_fraction: float, seed: int, *keys: str
) -> tuple[list[str], list[str]]:
    """Seeded ``(train, test)`` split of ``names``: ``len * test_fraction`` (rounded half up) for test.

    With two or more names each side keeps at least one. Both lists keep the order of ``names``.

    Raises:
        OdsSamError: If ``test_fraction`` is outside [0, 1].
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise OdsSamError(f"test_fraction must be within [0, 1], got {test_fraction}")
    test_count = math.floor(len(names) * test_fraction + 0.5)  # half up, unlike round()
    if len(names) >= 2 and 0.0 < test_fraction < 1.0:
        test_count = min(max(test_count, 1), len(names) - 1)
    chosen = set(seeded_shuffle(names, seed, *keys)[:test_count])
    return [n for n in names if n not in chosen], [n for n in names if n in chosen]


# --------------------------------------------------------------------------- split files


def write_split_file(record: dict[str, Any], path: str | Path) -> Path:
    """Write a split record (``Dataset.split_record()``) as JSON, atomically."""
    return atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def read_split_file(path: str | Path) -> dict[str, Any]:
    """Read and validate a split file.

    Returns:
        The record; ``record["splits"]`` maps each of ``train``/``val``/``test`` present
        to a list of sample names.

    Raises:
        OdsSamError: If the file is missing, not JSON, or its ``splits`` are malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise OdsSamError(f"split file not found: {path}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OdsSamError(f"{path}: not a valid JSON split file ({error})") from error
    splits = record.get("splits") if isinstance(record, dict) else None
    if not isinstance(splits, dict) or not splits:
        raise OdsSamError(f"{path}: a split file needs a 'splits' mapping of split name to names")
    for split, names in splits.items():
        if split not in SPLIT_NAMES:
            raise OdsSamError(f"{path}: unknown split '{split}' (expected {', '.join(SPLIT_NAMES)})")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise OdsSamError(f"{path}: split '{split}' must be a list of sample names")
        if len(set(names)) != len(names):
            raise OdsSamError(f"{path}: split '{split}' lists a name twice")
    return record
