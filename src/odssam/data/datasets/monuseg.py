"""MoNuSeg: H&E tiles (``*.tif``, 1000x1000) with nucleus outlines in Aperio XML.

Training data: ``MoNuSegTrainingData/{Tissue_Images,Annotations}/`` (the official zip's
``MoNuSeg 2018 Training Data/{Tissue Images,Annotations}`` works too); test data:
``MoNuSegTestData/`` with ``.tif`` and ``.xml`` side by side (or in the same
sub-folders). Masks are the XML polygons rasterised at the image size; where an image
has no XML, a binary PNG of the same stem in ``Binary_masks/`` or ``masks/`` is used
(copies of the dataset often ship those instead). Protocol: 30 train (all trained on; the
paper holds none out) / 14 test, images at 512x512.
"""

from __future__ import annotations

from pathlib import Path

from odssam.data.index import DatasetIndex, Entry, IndexOptions, check_root, find_dir, list_images, regular_files
from odssam.data.datasets.common import reject_category

NAME = "monuseg"
EXPECTED = {"train": 30, "test": 14}
TRAIN_DIRS = ("MoNuSegTrainingData", "MoNuSeg 2018 Training Data", "MoNuSeg_Training_Data")
TEST_DIRS = ("MoNuSegTestData", "MoNuSeg 2018 Test Data", "MoNuSeg_Test_Data")
IMAGE_DIRS = ("Tissue_Images", "Tissue Images", "images")
ANNOTATION_DIRS = ("Annotations", "annotations")
BINARY_MASK_DIRS = ("Binary_masks", "Binary_Masks", "masks")


def _xml_files(folder: Path, index: DatasetIndex, split: str) -> dict[str, Path]:
    def is_xml(path: Path) -> bool:
        return path.suffix.lower() == ".xml" and not path.name.startswith(".")

    return {path.stem: path for path in regular_files(folder, index, split, is_xml)}


def _index_folder(folder: Path, index: DatasetIndex, split: str) -> None:
    images_dir = find_dir(folder, *IMAGE_DIRS) or folder
    images = list_images(images_dir, index, split)
    if not images:
        index.error("no image files (expected Tissue_Images/*.tif)", images_dir, split)
        index.splits[split] = []
        return
    xml_dir = find_dir(folder, *ANNOTATION_DIRS) or folder
    annotations = _xml_files(xml_dir, index, split)
    binary_dir = find_dir(folder, *BINARY_MASK_DIRS)
    binary_masks = list_images(binary_dir, index, split) if binary_dir else {}
    entries, from_png = [], 0
    for stem, image_path in images.items():
        if stem in annotations:
            entries.append(Entry(stem, image_path, annotations[stem], "polygons"))
        elif stem in binary_masks:
            entries.append(Entry(stem, image_path, binary_masks[stem], "binary"))
            from_png += 1
        else:
            index.error(f"no annotation {xml_dir / (stem + '.xml')} for this image", image_path, split)
    for stem in sorted(set(annotations) - set(images)):
        index.warn("annotation without an image (ignored)", annotations[stem], split)
    index.splits[split] = entries
    index.expected[split] = EXPECTED[split]
    if from_png:
        index.notes.append(
            f"{split}: {len(entries) - from_png} masks from XML polygons, "
            f"{from_png} from binary PNGs in {binary_dir}"
        )


def index_monuseg(root: str | Path, category: str | None, options: IndexOptions) -> DatasetIndex:
    """Index the MoNuSeg folder (holding the training and test folders) or its training folder."""
    reject_category(NAME, category)
    path, index = check_root(root, NAME)
    if index.issues:
        return index
    index.protocol = {"split": "MoNuSeg 2018: 30 train / 14 test", "paper_image_size": 512}
    train_dir = find_dir(path, *TRAIN_DIRS)
    if train_dir is None and find_dir(path, *IMAGE_DIRS) is not None:
        train_dir = path
    if train_dir is None:
        index.error(f"no training folder (expected {TRAIN_DIRS[0]}/ or Tissue_Images/)", path, "train")
    else:
        _index_folder(train_dir, index, "train")
    test_dir = find_dir(path, *TEST_DIRS)
    if test_dir is None:
        index.warn(f"no test folder (expected {TEST_DIRS[0]}/): the test split is empty", path, "test")
        index.splits["test"] = []
    else:
        _index_folder(test_dir, index, "test")
    return index
