"""Build a small PraNet-layout folder from Kvasir-SEG and CVC-ClinicDB copies, for GPU smoke runs.

PraNet's real ``TrainDataset``/``TestDataset`` is not always at hand; this writes a stand-in in
the same layout from the PraNet *training* images of the two datasets, with a clearly labelled
held-out part playing ``TestDataset/Kvasir`` and ``TestDataset/CVC-ClinicDB``. Images are
resized to 352x352 (the size of PraNet's released training images) and written as JPEG so that
the folder stays small enough to carry to a GPU machine; masks are binary PNGs.

    python3 benchmarks/make_pranet_standin.py --kvasir data/Kvasir-SEG --clinicdb data/CVC-ClinicDB \
        --out pranet-standin --test-kvasir 100 --test-clinicdb 20

Scores on such a folder are not PraNet's test sets: say so wherever they are reported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from odssam.data.image_io import read_image, read_mask

SIZE = 352


def _pairs(kvasir: Path | None, clinicdb: Path | None) -> dict[str, list[tuple[Path, Path]]]:
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    if kvasir:
        pairs["Kvasir"] = [(p, kvasir / "masks" / p.name) for p in sorted((kvasir / "images").glob("*.jpg"))]
    if clinicdb:
        pairs["CVC-ClinicDB"] = [
            (p, clinicdb / "Ground Truth" / p.name) for p in sorted((clinicdb / "Original").glob("*.tif"))
        ]
    return pairs


def _write(image_path: Path, mask_path: Path, stem: str, folder: Path, image_dir: str, mask_dir: str) -> None:
    image = Image.fromarray(read_image(image_path)).resize((SIZE, SIZE), Image.BICUBIC)
    mask = Image.fromarray((read_mask(mask_path) > 0).astype(np.uint8) * 255).resize((SIZE, SIZE), Image.NEAREST)
    (folder / image_dir).mkdir(parents=True, exist_ok=True)
    (folder / mask_dir).mkdir(parents=True, exist_ok=True)
    image.save(folder / image_dir / f"{stem}.jpg", quality=90)
    mask.save(folder / mask_dir / f"{stem}.png", optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvasir", type=Path, help="Kvasir-SEG folder (images/, masks/)")
    parser.add_argument("--clinicdb", type=Path, help="CVC-ClinicDB folder (Original/, Ground Truth/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-kvasir", type=int, default=100, help="Kvasir images held out as TestDataset/Kvasir")
    parser.add_argument("--test-clinicdb", type=int, default=20, help="held out as TestDataset/CVC-ClinicDB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    held_out = {"Kvasir": args.test_kvasir, "CVC-ClinicDB": args.test_clinicdb}
    for name, pairs in _pairs(args.kvasir, args.clinicdb).items():
        order = rng.permutation(len(pairs))
        test = set(order[: held_out[name]].tolist())
        prefix = "kvasir" if name == "Kvasir" else "clinicdb"
        for index, (image_path, mask_path) in enumerate(pairs):
            stem = f"{prefix}_{image_path.stem}"
            if index in test:
                _write(image_path, mask_path, stem, args.out / "TestDataset" / name, "images", "masks")
            else:
                _write(image_path, mask_path, stem, args.out / "TrainDataset", "image", "mask")
        print(f"{name}: {len(pairs) - len(test)} train, {len(test)} held out as TestDataset/{name}")


if __name__ == "__main__":
    main()
