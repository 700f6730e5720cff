"""Generators of small datasets in each dataset's exact on-disk layout.

Images are a few dozen pixels wide so that every test decodes in milliseconds. Each
layout reproduces the quirk its loader must handle: JPEG masks with compression noise
(Kvasir-SEG), RGB TIFFs with a photometric tag PIL rejects (CVC-ClinicDB), LZW TIFFs and
XML polygons (MoNuSeg), instance-label BMPs (GlaS), ``_mask`` names and mask-less
``good`` images (MVTec AD), and grayscale / RGBA / palette / 16-bit files (folders).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from helpers import random_rgb, save_image
from PIL import Image

from odssam.data.splits import packaged_split_names

PRANET_TEST_SETS = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300")


# --------------------------------------------------------------------------- primitives


def disk(height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def save_jpeg_mask(mask: np.ndarray, path: Path) -> Path:
    """An RGB JPEG of a 0/255 mask: compression leaves grey values around the edges."""
    rgb = np.repeat((mask.astype(np.uint8) * 255)[:, :, None], 3, axis=2)
    return save_image(rgb, path, quality=60)


def save_minisblack_rgb_tiff(rgb: np.ndarray, path: Path) -> Path:
    """An RGB TIFF whose PhotometricInterpretation says MINISBLACK, as in CVC-ClinicDB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rgb, photometric="rgb")
    with tifffile.TiffFile(path) as tiff:
        tag = tiff.pages[0].tags["PhotometricInterpretation"]
        offset, byteorder = tag.valueoffset, tiff.byteorder
    data = bytearray(path.read_bytes())
    data[offset : offset + 2] = (1).to_bytes(2, "little" if byteorder == "<" else "big")
    path.write_bytes(bytes(data))
    return path


def write_monuseg_xml(path: Path, regions: list[list[tuple[float, float]]]) -> Path:
    """An Aperio ImageScope XML with one Region per vertex list."""
    parts = ['<Annotations MicronsPerPixel="0.25"><Annotation Id="1"><Regions>']
    parts.append('<RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region"/></RegionAttributeHeaders>')
    for number, vertices in enumerate(regions, start=1):
        parts.append(f'<Region Id="{number}" Type="0"><Attributes/><Vertices>')
        parts.extend(f'<Vertex X="{x}" Y="{y}"/>' for x, y in vertices)
        parts.append("</Vertices></Region>")
    parts.append("</Regions></Annotation></Annotations>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


# Two overlapping squares and one two-vertex region (no area: skipped).
MONUSEG_REGIONS = [
    [(4, 4), (14, 4), (14, 14), (4, 14)],
    [(10, 10), (20, 10), (20, 20), (10, 20)],
    [(25.5, 3.2), (27.1, 8.4)],
]


def monuseg_expected_mask(height: int = 32, width: int = 32) -> np.ndarray:
    """Pixel centres inside either square (half-open on the right/bottom edges)."""
    mask = np.zeros((height, width), dtype=bool)
    mask[4:14, 4:14] = True
    mask[10:20, 10:20] = True
    return mask


# --------------------------------------------------------------------------- layouts


def make_kvasir(root: Path, rng: np.random.Generator) -> dict[str, list[str]]:
    names = {"train": packaged_split_names("kvasir_train")[:4], "test": packaged_split_names("kvasir_test")[:2]}
    sizes = [(30, 40), (36, 28), (30, 40), (24, 24), (32, 32), (28, 36)]
    for (height, width), name in zip(sizes, names["train"] + names["test"]):
        save_image(random_rgb(rng, height, width), root / "images" / f"{name}.jpg", quality=90)
        save_jpeg_mask(disk(height, width, (height / 2, width / 2), min(height, width) / 3), root / "masks" / f"{name}.jpg")
    return names


def make_clinicdb(root: Path, rng: np.random.Generator) -> dict[str, list[str]]:
    names = {"train": packaged_split_names("clinicdb_train")[:3], "test": packaged_split_names("clinicdb_test")[:2]}
    for name in names["train"] + names["test"]:
        save_minisblack_rgb_tiff(random_rgb(rng, 24, 32), root / "Original" / f"{name}.tif")
        mask = np.where(disk(24, 32, (12, 16), 8), 255, 0).astype(np.uint8)
        mask[0, 0] = 100  # stray grey pixels, below the threshold
        mask[12, 16] = 200  # and above it
        (root / "Ground Truth").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "Ground Truth" / f"{name}.tif", mask)
    return names


def make_pranet(root: Path, rng: np.random.Generator) -> None:
    def write(folder: Path, image_dir: str, mask_dir: str, count: int) -> None:
        for number in range(1, count + 1):
            save_image(random_rgb(rng, 20, 24), folder / image_dir / f"{number}.png")
            save_image(disk(20, 24, (10, 12), 3 + number), folder / mask_dir / f"{number}.png")

    write(root / "TrainDataset", "image", "mask", 3)
    for position, test_set in enumerate(PRANET_TEST_SETS):
        write(root / "TestDataset" / test_set, "images", "masks", 1 + position % 2)


def make_monuseg(root: Path, rng: np.random.Generator) -> None:
    train = root / "MoNuSegTrainingData"
    for stem in ("TCGA-AA-0001", "TCGA-AA-0002"):
        save_image(random_rgb(rng, 32, 32), train / "Tissue_Images" / f"{stem}.tif", compression="tiff_lzw")
        write_monuseg_xml(train / "Annotations" / f"{stem}.xml", MONUSEG_REGIONS)
    test = root / "MoNuSegTestData"
    save_image(random_rgb(rng, 32, 32), test / "TCGA-BB-0003.tif", compression="tiff_lzw")
    write_monuseg_xml(test / "TCGA-BB-0003.xml", MONUSEG_REGIONS[:1])


def make_glas(root: Path, rng: np.random.Generator) -> Path:
    folder = root / "Warwick QU Dataset (Released 2016_07_08)"
    labels = np.zeros((20, 24), dtype=np.uint8)
    labels[2:8, 2:8] = 1
    labels[10:18, 12:22] = 2  # a second gland: its own instance label
    for stem in ("train_1", "train_2", "train_10", "testA_1", "testA_2", "testB_1"):
        save_image(random_rgb(rng, 20, 24), folder / f"{stem}.bmp")
        save_image(labels, folder / f"{stem}_anno.bmp")
    (folder / "Grade.csv").write_text("name,grade\ntrain_1,benign\n")
    return folder


MVTEC_DEFECTS = {"broken": 4, "crack": 3}


def make_mvtec(root: Path, rng: np.random.Generator, category: str = "bottle") -> Path:
    folder = root / category
    save_image(random_rgb(rng, 16, 16), folder / "train" / "good" / "000.png")
    for number in range(2):
        save_image(random_rgb(rng, 16, 16), folder / "test" / "good" / f"{number:03d}.png")
    for defect, count in MVTEC_DEFECTS.items():
        for number in range(count):
            save_image(random_rgb(rng, 16, 16), folder / "test" / defect / f"{number:03d}.png")
            save_image(disk(16, 16, (8, 8), 2 + number), folder / "ground_truth" / defect / f"{number:03d}_mask.png")
    return folder


def make_folder(root: Path, rng: np.random.Generator) -> None:
    """One image per awkward mode, masks matched by stem or ``<stem>_mask``."""
    height, width = 12, 16
    shape = disk(height, width, (6, 8), 4)
    save_image(rng.integers(0, 256, (height, width), dtype=np.uint8), root / "images" / "gray.png")
    save_image(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), root / "images" / "rgba.png")
    palette_image = Image.fromarray(random_rgb(rng, height, width)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    (root / "images").mkdir(parents=True, exist_ok=True)
    palette_image.save(root / "images" / "palette.png")
    deep = (rng.integers(0, 65536, (height, width))).astype(np.uint16)
    Image.fromarray(deep).save(root / "images" / "deep.png")
    save_image(random_rgb(rng, height, width), root / "images" / "photo.jpg")
    save_image(shape, root / "masks" / "gray.png")
    save_image(shape, root / "masks" / "rgba_mask.png")
    palette_mask = Image.fromarray(shape.astype(np.uint8), mode="L").convert("P")
    palette_mask.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1 drawn red
    palette_mask.save(root / "masks" / "palette.png")
    save_image(shape.astype(np.uint8), root / "masks" / "deep.png")  # 0/1 values
    save_image(shape, root / "masks" / "photo.png")


def make_binary_folder(
    root: Path, rng: np.random.Generator, names: tuple[str, ...] = ("a", "b"), size: tuple[int, int] = (32, 40)
) -> Path:
    """A flat ``folder`` dataset: random PNG images with clean 0/255 disk masks of one size."""
    height, width = size
    for name in names:
        save_image(random_rgb(rng, height, width), root / "images" / f"{name}.png")
        save_image(disk(height, width, (height / 2, width / 2), min(height, width) / 3), root / "masks" / f"{name}.png")
    return root
