"""Kvasir-SEG: ``images/*.jpg`` + ``masks/*.jpg`` with PraNet's 900/100 split.

The masks are JPEG (RGB, with compression noise around the edges): binarised at > 127
on their luma. Image sizes vary from 332x487 to 1920x1072.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.datasets.common import index_pranet_listed
from odssam.data.index import DatasetIndex, IndexOptions

NAME = "kvasir"
WRAPPERS = ("Kvasir-SEG", "kvasir-seg")
IMAGE_DIRS = ("images",)
MASK_DIRS = ("masks",)
LIST_LABEL = "PraNet Kvasir-SEG"
PROTOCOL = "PraNet Kvasir-SEG lists (900 train / 100 test)"


def index_kvasir(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index a Kvasir-SEG folder (the folder holding ``images/`` and ``masks/``, or its parent)."""
    return index_pranet_listed(root, category, NAME, WRAPPERS, IMAGE_DIRS, MASK_DIRS, LIST_LABEL, PROTOCOL)
