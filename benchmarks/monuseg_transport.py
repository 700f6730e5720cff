"""Carry MoNuSeg's training data to a benchmark machine in a fifth of its size, and rebuild it there.

The 30 training tiles are 1000x1000 LZW TIFFs with large Aperio XML outlines (about 108 MB in
all). ``pack`` writes the tiles as JPEG (quality 85: for speed benchmarks, not for scores),
the XML files xz-compressed and the binary masks as they are (about 12 MB); ``unpack``
rebuilds the dataset's own layout (uncompressed TIFFs, XML), and with ``--test-standin N``
also a ``MoNuSegTestData`` folder from the first N training tiles, so that a run's final
evaluation can be timed where the real test set is not available (its scores mean nothing).

    python benchmarks/monuseg_transport.py pack MoNuSeg/MoNuSegTrainingData packed/
    python benchmarks/monuseg_transport.py unpack packed/ MoNuSeg --test-standin 14
"""

from __future__ import annotations

import argparse
import lzma
import shutil
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from odssam.data.image_io import read_image

JPEG_QUALITY = 85


def pack(training: Path, packed: Path) -> None:
    packed.mkdir(parents=True, exist_ok=True)
    for tile in sorted((training / "Tissue_Images").glob("*.tif")):
        Image.fromarray(read_image(tile)[..., :3]).save(packed / f"{tile.stem}.jpg", quality=JPEG_QUALITY)
    for outline in sorted((training / "Annotations").glob("*.xml")):
        (packed / f"{outline.name}.xz").write_bytes(lzma.compress(outline.read_bytes(), preset=9))
    masks = training / "Binary_masks"
    if masks.is_dir():
        shutil.copytree(masks, packed / "Binary_masks", dirs_exist_ok=True)


def unpack(packed: Path, root: Path, test_standin: int) -> None:
    training = root / "MoNuSegTrainingData"
    images, outlines = training / "Tissue_Images", training / "Annotations"
    images.mkdir(parents=True, exist_ok=True)
    outlines.mkdir(exist_ok=True)
    tiles = sorted(packed.glob("*.jpg"))
    for tile in tiles:
        tifffile.imwrite(images / f"{tile.stem}.tif", np.asarray(Image.open(tile).convert("RGB")))
    for compressed in sorted(packed.glob("*.xml.xz")):
        (outlines / compressed.name[: -len(".xz")]).write_bytes(lzma.decompress(compressed.read_bytes()))
    if (packed / "Binary_masks").is_dir():
        shutil.copytree(packed / "Binary_masks", training / "Binary_masks", dirs_exist_ok=True)
    if test_standin:
        test = root / "MoNuSegTestData"
        (test / "Binary_masks").mkdir(parents=True, exist_ok=True)
        for tile in tiles[:test_standin]:
            shutil.copy(images / f"{tile.stem}.tif", test / f"{tile.stem}.tif")
            outline = outlines / f"{tile.stem}.xml"
            if outline.exists():
                shutil.copy(outline, test / outline.name)
            else:
                shutil.copy(training / "Binary_masks" / f"{tile.stem}.png", test / "Binary_masks" / f"{tile.stem}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="MoNuSegTrainingData -> packed folder")
    packing.add_argument("training", type=Path)
    packing.add_argument("packed", type=Path)
    unpacking = commands.add_parser("unpack", help="packed folder -> dataset root")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("root", type=Path)
    unpacking.add_argument("--test-standin", type=int, default=0, help="copy N training tiles as MoNuSegTestData")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.training, args.packed)
    else:
        unpack(args.packed, args.root, args.test_standin)


if __name__ == "__main__":
    main()
