"""Kvasir-SEG: ``images/*.jpg`` + ``masks/*.jpg`` with PraNet's 900/100 split.

The masks are JPEG (RGB, with compression noise around the edges): binarised at > 127
on their luma. Image sizes vary from 332x487 to 1920x1072.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.datasets.common import index_pranet_listed, reject_category
from odssam.data.index import DatasetIndex, IndexOptions

NAME = "kvasir"
WRAPPERS = ("Kvasir-SEG", "kvasir-seg")


def index_kvasir(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index a Kvasir-SEG folder (the folder holding ``images/`` and ``masks/``, or its parent)."""
    reject_category(NAME, category)
    return index_pranet_listed(
        root,
        NAME,
        WRAPPERS,
        image_dirs=("images",),
        mask_dirs=("masks",),
        list_label="PraNet Kvasir-SEG",
        protocol="PraNet Kvasir-SEG lists (900 train / 100 test)",
    )
