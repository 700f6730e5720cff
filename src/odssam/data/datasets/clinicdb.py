"""CVC-ClinicDB: ``Original/N.tif`` + ``Ground Truth/N.tif`` with PraNet's 550/62 split.

The RGB TIFFs declare a photometric interpretation PIL rejects (``tifffile`` reads
them); the PNG copies that circulate (``PNG/Original``, ``PNG/Ground Truth``) work too.
A few masks have grey pixels: binarised at > 127.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.datasets.common import index_pranet_listed
from odssam.data.index import DatasetIndex, IndexOptions

NAME = "clinicdb"
WRAPPERS = ("CVC-ClinicDB", "TIF", "PNG", "CVC-ClinicDB/TIF", "CVC-ClinicDB/PNG")
IMAGE_DIRS = ("Original",)
MASK_DIRS = ("Ground Truth", "GroundTruth", "Ground_Truth")
LIST_LABEL = "PraNet CVC-ClinicDB"
PROTOCOL = "PraNet CVC-ClinicDB lists (550 train / 62 test)"


def index_clinicdb(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index a CVC-ClinicDB folder (the one holding ``Original/``, or a wrapper of it)."""
    return index_pranet_listed(root, category, NAME, WRAPPERS, IMAGE_DIRS, MASK_DIRS, LIST_LABEL, PROTOCOL)
