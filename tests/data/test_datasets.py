"""Each dataset layout, loaded through the registry's factory."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from odssam.data import (
    Sample,
    build_dataset,
    collate_samples,
    dataset_info,
    list_datasets,
    read_split_file,
    write_split_file,
)
from odssam.errors import OdsSamError

from data_layouts import MVTEC_DEFECTS, disk, monuseg_expected_mask
from helpers import random_rgb, save_image


def assert_valid_sample(sample: Sample) -> None:
    assert isinstance(sample, Sample)
    assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[2] == 3
    assert sample.mask.dtype == np.bool_ and sample.mask.shape == sample.image.shape[:2]


def test_registry_lists_every_dataset():
    assert list_datasets() == ["kvasir", "clinicdb", "pranet", "monuseg", "glas", "mvtec", "folder"]
    assert dataset_info("monuseg")["paper_image_size"] == 512
    assert dataset_info("glas")["paper_image_size"] == 224
    assert len(dataset_info("mvtec")["categories"]) == 15
    with pytest.raises(OdsSamError, match="unknown dataset 'nope'"):
        dataset_info("nope")


def test_kvasir_pranet_split(kvasir_root):
    train = build_dataset("kvasir", kvasir_root, "train")
    test = build_dataset("kvasir", kvasir_root, "test")
    assert len(train) == 4 and len(test) == 2
    assert not set(train.names) & set(test.names)
    sample = train[0]
    assert_valid_sample(sample)
    assert sample.name == train.names[0] and sample.path.endswith(".jpg")
    assert sample.original_size == sample.image.shape[:2]
    height, width = sample.original_size
    truth = disk(height, width, (height / 2, width / 2), min(height, width) / 3)
    assert (sample.mask != truth).sum() <= 4  # JPEG noise removed by the > 127 threshold


def test_kvasir_accepts_the_parent_folder(kvasir_root):
    assert len(build_dataset("kvasir", kvasir_root.parent, "train")) == 4


def test_validation_hold_out(kvasir_root):
    train = build_dataset("kvasir", kvasir_root, "train", val_count=1)
    val = build_dataset("kvasir", kvasir_root, "val", val_count=1)
    assert len(train) == 3 and len(val) == 1 and not set(train.names) & set(val.names)
    assert build_dataset("kvasir", kvasir_root, "val", val_count=1).names == val.names
    record = val.split_record()
    assert record["splits"]["val"] == val.names and record["splits"]["train"] == train.names


def test_image_size_resizes_and_keeps_original_size(kvasir_root):
    sample = build_dataset("kvasir", kvasir_root, "train", image_size=16)[1]
    assert sample.image.shape == (16, 16, 3) and sample.mask.shape == (16, 16)
    assert sample.original_size == (36, 28)


def test_clinicdb_reads_minisblack_tiffs(clinicdb_root):
    train = build_dataset("clinicdb", clinicdb_root, "train")
    assert len(train) == 3 and len(build_dataset("clinicdb", clinicdb_root, "test")) == 2
    sample = train[0]
    assert_valid_sample(sample)
    assert sample.image.shape == (24, 32, 3)
    assert not sample.mask[0, 0] and sample.mask[12, 16]  # grey 100 -> off, 200 -> on


def test_clinicdb_png_copies(tmp_path, clinicdb_root, rng):
    png_root = tmp_path / "download" / "PNG"
    for name in ("1", "2"):
        save_image(random_rgb(rng, 8, 8), png_root / "Original" / f"{name}.png")
        save_image(disk(8, 8, (4, 4), 2), png_root / "Ground Truth" / f"{name}.png")
    train = build_dataset("clinicdb", tmp_path / "download", "train")
    assert train.names == ["1", "2"]
    assert train[0].mask.sum() > 0


def test_pranet_train_and_test_sets(pranet_root):
    assert len(build_dataset("pranet", pranet_root, "train")) == 3
    clinic = build_dataset("pranet", pranet_root, "test", category="CVC-ClinicDB")
    assert len(clinic) == 2 and clinic.category == "CVC-ClinicDB"
    assert build_dataset("pranet", pranet_root, "test", category="etis").category == "ETIS-LaribPolypDB"
    assert_valid_sample(clinic[1])


def test_pranet_test_needs_a_test_set(pranet_root):
    with pytest.raises(OdsSamError, match="needs a test set"):
        build_dataset("pranet", pranet_root, "test")
    with pytest.raises(OdsSamError, match="unknown PraNet test set 'polyps'"):
        build_dataset("pranet", pranet_root, "test", category="polyps")


def test_monuseg_rasterises_xml_at_the_image_size(monuseg_root):
    train = build_dataset("monuseg", monuseg_root, "train")
    test = build_dataset("monuseg", monuseg_root, "test")
    assert train.names == ["TCGA-AA-0001", "TCGA-AA-0002"] and test.names == ["TCGA-BB-0003"]
    sample = train[0]
    assert_valid_sample(sample)
    np.testing.assert_array_equal(sample.mask, monuseg_expected_mask())
    assert sample.mask_path.endswith(".xml")
    resized = build_dataset("monuseg", monuseg_root, "train", image_size=16)[0]
    assert resized.mask.shape == (16, 16) and resized.original_size == (32, 32)
    np.testing.assert_array_equal(resized.mask, monuseg_expected_mask()[1::2, 1::2])


def test_monuseg_falls_back_to_binary_masks(monuseg_root):
    train = monuseg_root / "MoNuSegTrainingData"
    (train / "Annotations" / "TCGA-AA-0002.xml").unlink()
    save_image(disk(32, 32, (16, 16), 5).astype(np.uint8), train / "Binary_masks" / "TCGA-AA-0002.png")
    sample = build_dataset("monuseg", monuseg_root, "train")[1]
    np.testing.assert_array_equal(sample.mask, disk(32, 32, (16, 16), 5))


def test_monuseg_validation_protocol(monuseg_root):
    val = build_dataset("monuseg", monuseg_root, "val", val_count=1)
    assert len(val) == 1 and val.split_record()["counts"] == {"train": 1, "val": 1, "test": 1}


def test_glas_instance_labels_and_parts(glas_root):
    train = build_dataset("glas", glas_root, "train")
    assert train.names == ["train_1", "train_2", "train_10"]
    assert build_dataset("glas", glas_root, "test").names == ["testA_1", "testA_2", "testB_1"]
    assert build_dataset("glas", glas_root, "test", category="testB").names == ["testB_1"]
    mask = train[0].mask
    assert mask[2:8, 2:8].all() and mask[10:18, 12:22].all() and mask.sum() == 36 + 80
    with pytest.raises(OdsSamError, match="testA' or 'testB"):
        build_dataset("glas", glas_root, "test", category="testC")


def test_mvtec_seeded_split_per_defect(mvtec_root):
    train = build_dataset("mvtec", mvtec_root, "train", category="bottle")
    test = build_dataset("mvtec", mvtec_root, "test", category="bottle")
    total = sum(MVTEC_DEFECTS.values())
    assert len(train) + len(test) == total and not set(train.names) & set(test.names)
    for defect in MVTEC_DEFECTS:  # every defect type on both sides
        assert any(n.startswith(defect) for n in train.names)
        assert any(n.startswith(defect) for n in test.names)
    assert all(not n.startswith("good") for n in train.names + test.names)
    assert all(sample.mask.any() for sample in test)
    again = build_dataset("mvtec", mvtec_root, "test", category="bottle")
    assert again.names == test.names
    other = build_dataset("mvtec", mvtec_root, "test", category="bottle", split_seed=3)
    assert other.names != test.names or len(test) < 3


def test_mvtec_include_good_adds_empty_masks(mvtec_root):
    train = build_dataset("mvtec", mvtec_root, "train", category="bottle", include_good=True)
    test = build_dataset("mvtec", mvtec_root, "test", category="bottle", include_good=True)
    good = [n for n in train.names + test.names if n.startswith("good_")]
    assert sorted(good) == ["good_000", "good_001"]
    sample = next(s for s in list(train) + list(test) if s.name.startswith("good_"))
    assert not sample.mask.any() and sample.mask_path is None


def test_mvtec_category_folder_as_root(mvtec_root):
    direct = build_dataset("mvtec", mvtec_root / "bottle", "test")
    assert direct.category == "bottle"
    assert direct.names == build_dataset("mvtec", mvtec_root, "test", category="bottle").names


def test_mvtec_split_file_is_written_and_reused(tmp_path, mvtec_root):
    train = build_dataset("mvtec", mvtec_root, "train", category="bottle", test_fraction=0.5)
    record = train.split_record()
    assert record["dataset"] == "mvtec" and "not public" in record["note"]
    path = write_split_file(record, tmp_path / "run" / "split.json")
    assert read_split_file(path)["splits"]["test"] == record["splits"]["test"]
    # A different seed and fraction are ignored: the file decides.
    reused = build_dataset(
        "mvtec", mvtec_root, "test", category="bottle", split_seed=9, test_fraction=0.9, split_file=path
    )
    assert reused.names == record["splits"]["test"]


def test_split_file_can_move_names_in_shared_pools(tmp_path, mvtec_root):
    path = write_split_file(
        {"dataset": "mvtec", "splits": {"train": ["broken_000"], "val": ["crack_000"], "test": ["crack_001"]}},
        tmp_path / "split.json",
    )
    val = build_dataset("mvtec", mvtec_root, "val", category="bottle", split_file=path)
    assert val.names == ["crack_000"]


def test_split_file_errors(tmp_path, mvtec_root, kvasir_root):
    unknown = write_split_file({"splits": {"test": ["broken_999"]}}, tmp_path / "a.json")
    with pytest.raises(OdsSamError, match="a.json: 1 test name"):
        build_dataset("mvtec", mvtec_root, "test", category="bottle", split_file=unknown)
    other = write_split_file({"dataset": "kvasir", "splits": {"test": []}}, tmp_path / "b.json")
    with pytest.raises(OdsSamError, match="b.json: records dataset 'kvasir'"):
        build_dataset("mvtec", mvtec_root, "test", category="bottle", split_file=other)


def test_mvtec_needs_an_existing_category(mvtec_root):
    with pytest.raises(OdsSamError, match="needs a category; found: bottle"):
        build_dataset("mvtec", mvtec_root, "train")
    with pytest.raises(OdsSamError, match="no MVTec AD category 'cable'"):
        build_dataset("mvtec", mvtec_root, "train", category="cable")


def test_folder_reads_every_image_mode(folder_root):
    dataset = build_dataset("folder", folder_root, "train", test_fraction=0.0)
    assert sorted(dataset.names) == ["deep", "gray", "palette", "photo", "rgba"]
    expected = disk(12, 16, (6, 8), 4)
    for sample in dataset:
        assert_valid_sample(sample)
        np.testing.assert_array_equal(sample.mask, expected, err_msg=sample.name)
    gray = dataset[dataset.names.index("gray")].image
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_folder_seeded_split_and_train_test_layout(tmp_path, folder_root, rng):
    train = build_dataset("folder", folder_root, "train", test_fraction=0.4)
    test = build_dataset("folder", folder_root, "test", test_fraction=0.4)
    assert len(test) == 2 and len(train) == 3
    for split, count in (("train", 2), ("test", 1)):
        for number in range(count):
            save_image(random_rgb(rng, 8, 8), tmp_path / "mine" / split / "images" / f"{split}{number}.png")
            save_image(disk(8, 8, (4, 4), 2), tmp_path / "mine" / split / "masks" / f"{split}{number}.png")
    assert build_dataset("folder", tmp_path / "mine", "test").names == ["test0"]


def test_dataloader_keeps_samples_as_a_list(kvasir_root):
    torch.manual_seed(0)
    loader = DataLoader(build_dataset("kvasir", kvasir_root, "train"), batch_size=3, collate_fn=collate_samples)
    batch = next(iter(loader))
    assert isinstance(batch, list) and len(batch) == 3 and all(isinstance(s, Sample) for s in batch)


def test_dataset_pickles_for_worker_processes(monuseg_root):
    dataset = build_dataset("monuseg", monuseg_root, "train", image_size=16)
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.names == dataset.names
    np.testing.assert_array_equal(copy[0].mask, dataset[0].mask)
