"""Bad folders and bad arguments give an OdsSamError naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from odssam.data import build_dataset
from odssam.errors import OdsSamError

from helpers import random_rgb, save_image


def test_missing_root(tmp_path):
    with pytest.raises(OdsSamError, match="dataset folder not found"):
        build_dataset("kvasir", tmp_path / "nowhere", "train")


def test_root_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OdsSamError, match="not a folder"):
        build_dataset("folder", tmp_path / "file", "train")


def test_missing_mask_names_the_image(kvasir_root):
    image = sorted((kvasir_root / "images").iterdir())[0]
    (kvasir_root / "masks" / image.name).unlink()
    with pytest.raises(OdsSamError, match="no mask for this image") as caught:
        build_dataset("kvasir", kvasir_root, "train")
    assert image.name in str(caught.value) and "odssam data check" in str(caught.value)


def test_unreadable_image_names_the_file(clinicdb_root):
    dataset = build_dataset("clinicdb", clinicdb_root, "train")
    (clinicdb_root / "Original" / f"{dataset.names[0]}.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(OdsSamError, match=f"{dataset.names[0]}.tif"):
        dataset[0]


def test_unreadable_mask_names_the_file(kvasir_root):
    dataset = build_dataset("kvasir", kvasir_root, "train")
    (kvasir_root / "masks" / f"{dataset.names[1]}.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(OdsSamError, match=f"masks/{dataset.names[1]}.jpg"):
        dataset[1]


def test_size_mismatch_names_both_files(folder_root):
    save_image(np.zeros((5, 5), dtype=np.uint8), folder_root / "masks" / "gray.png")
    dataset = build_dataset("folder", folder_root, "train", test_fraction=0.0)
    with pytest.raises(OdsSamError, match="size mismatch") as caught:
        dataset[dataset.names.index("gray")]
    message = str(caught.value)
    assert "masks/gray.png is 5x5" in message and "images/gray.png is 16x12" in message


def test_undecodable_pixels_name_the_file(folder_root):
    """A decoder error whose own message lacks the path (complex pixels) gets it added."""
    import tifffile

    (folder_root / "images" / "gray.png").unlink()
    tifffile.imwrite(folder_root / "images" / "gray.tif", np.zeros((12, 16), dtype=np.complex64))
    dataset = build_dataset("folder", folder_root, "train", test_fraction=0.0)
    with pytest.raises(OdsSamError, match=r"images/gray\.tif: unsupported pixel type complex64"):
        dataset[dataset.names.index("gray")]


def test_empty_images_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(OdsSamError, match="images: no image files"):
        build_dataset("folder", tmp_path, "train")


def test_missing_masks_folder(tmp_path, rng):
    save_image(random_rgb(rng, 4, 4), tmp_path / "Original" / "1.png")
    with pytest.raises(OdsSamError, match="no masks folder"):
        build_dataset("clinicdb", tmp_path, "train")


def test_two_files_with_one_stem(folder_root, rng):
    save_image(random_rgb(rng, 12, 16), folder_root / "images" / "gray.bmp")
    with pytest.raises(OdsSamError, match="two files for 'gray'"):
        build_dataset("folder", folder_root, "train")


def test_empty_split_of_a_partial_copy(kvasir_root):
    for path in (kvasir_root / "images").iterdir():
        if path.stem in build_dataset("kvasir", kvasir_root, "test").names:
            path.unlink()
    with pytest.raises(OdsSamError, match="the test split is empty.*not in this folder"):
        build_dataset("kvasir", kvasir_root, "test")
    assert len(build_dataset("kvasir", kvasir_root, "train")) == 4


def test_problems_in_another_split_do_not_block_a_fixed_split(kvasir_root):
    test_name = build_dataset("kvasir", kvasir_root, "test").names[0]
    (kvasir_root / "masks" / f"{test_name}.jpg").unlink()
    assert len(build_dataset("kvasir", kvasir_root, "train")) == 4
    with pytest.raises(OdsSamError, match=test_name):
        build_dataset("kvasir", kvasir_root, "test")


def test_monuseg_image_without_annotation(monuseg_root):
    (monuseg_root / "MoNuSegTrainingData" / "Annotations" / "TCGA-AA-0001.xml").unlink()
    with pytest.raises(OdsSamError, match="no annotation .*TCGA-AA-0001.xml"):
        build_dataset("monuseg", monuseg_root, "train")


def test_monuseg_malformed_xml(monuseg_root):
    (monuseg_root / "MoNuSegTestData" / "TCGA-BB-0003.xml").write_text("<Annotations><Region")
    dataset = build_dataset("monuseg", monuseg_root, "test")
    with pytest.raises(OdsSamError, match="TCGA-BB-0003.xml: not a valid XML"):
        dataset[0]


def test_glas_image_without_annotation(glas_root):
    folder = next(glas_root.iterdir())
    (folder / "train_2_anno.bmp").unlink()
    with pytest.raises(OdsSamError, match="train_2.bmp: no annotation train_2_anno.bmp"):
        build_dataset("glas", glas_root, "train")


def test_mvtec_missing_mask(mvtec_root):
    (mvtec_root / "bottle" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(OdsSamError, match="crack/001.png: no mask .*001_mask"):
        build_dataset("mvtec", mvtec_root, "test", category="bottle")


def test_mvtec_missing_ground_truth_folder(mvtec_root):
    import shutil

    shutil.rmtree(mvtec_root / "bottle" / "ground_truth")
    with pytest.raises(OdsSamError, match="no ground_truth folder"):
        build_dataset("mvtec", mvtec_root, "train", category="bottle")


def test_pranet_missing_test_set(pranet_root):
    import shutil

    shutil.rmtree(pranet_root / "TestDataset" / "CVC-300")
    with pytest.raises(OdsSamError, match="no 'CVC-300' test set"):
        build_dataset("pranet", pranet_root, "test", category="CVC-300")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "holdout"}, "unknown split 'holdout'"),
        ({"split": "train", "image_size": 0}, "image_size must be a positive integer"),
        ({"split": "train", "category": "bottle"}, "has no categories"),
        ({"split": "val", "val_count": 4}, "leaves no training images"),
    ],
)
def test_bad_arguments(kvasir_root, kwargs, message):
    split = kwargs.pop("split")
    with pytest.raises(OdsSamError, match=message):
        build_dataset("kvasir", kvasir_root, split, **kwargs)


def test_unknown_dataset(tmp_path):
    with pytest.raises(OdsSamError, match="unknown dataset 'isic'.*kvasir"):
        build_dataset("isic", tmp_path, "train")
