"""Finding each dataset under --data-root: folder-name variants, the root itself, and what is missing."""

import shutil

from data_layouts import make_glas, make_monuseg, make_mvtec, make_pranet

from odssam.config import DataConfig
from odssam.reproduce.datasets import candidate_roots, probe_data


def test_names_are_matched_case_insensitively(tmp_path, rng):
    make_monuseg(tmp_path / "monuseg2018", rng)
    make_glas(tmp_path / "glas", rng)
    status = probe_data(DataConfig(dataset="monuseg"), tmp_path)
    assert status.root == tmp_path / "monuseg2018"
    assert status.counts == {"train": 2, "test": 1} and status.missing is None
    glas = probe_data(DataConfig(dataset="glas", val_count=1), tmp_path)
    assert glas.root == tmp_path / "glas"
    assert glas.counts == {"train": 2, "val": 1, "test": 3}


def test_the_data_root_itself_is_tried_last(tmp_path, rng):
    make_pranet(tmp_path, rng)  # TrainDataset/ and TestDataset/ right in the data root
    assert candidate_roots(tmp_path, "pranet") == [tmp_path]
    status = probe_data(DataConfig(dataset="pranet", test_sets=["Kvasir", "CVC-300"]), tmp_path)
    assert status.root == tmp_path
    assert status.counts == {"train": 3, "test:Kvasir": 1, "test:CVC-300": 1}


def test_a_missing_test_set_is_listed_but_the_run_can_go(tmp_path, rng):
    make_pranet(tmp_path / "PraNet", rng)
    shutil.rmtree(tmp_path / "PraNet" / "TestDataset" / "ETIS-LaribPolypDB")
    status = probe_data(DataConfig(dataset="pranet", test_sets=["Kvasir", "ETIS-LaribPolypDB"]), tmp_path)
    assert status.missing is None
    assert list(status.missing_tests) == ["ETIS-LaribPolypDB"]
    assert "test:Kvasir" in status.counts


def test_missing_dataset_and_category(tmp_path, rng):
    status = probe_data(DataConfig(dataset="glas"), tmp_path)
    assert status.root is None and status.counts == {}
    assert "not usable" in status.missing and str(tmp_path) in status.missing
    make_mvtec(tmp_path / "MVTec-AD", rng, "bottle")
    bottle = probe_data(DataConfig(dataset="mvtec", category="bottle"), tmp_path)
    assert bottle.root == tmp_path / "MVTec-AD" and bottle.missing is None
    assert bottle.counts == {"train": 3, "test": 4}
    cable = probe_data(DataConfig(dataset="mvtec", category="cable"), tmp_path)
    assert cable.label == "mvtec/cable" and "no MVTec AD category 'cable'" in cable.missing


def test_training_data_without_test_data_is_missing(tmp_path, rng):
    make_monuseg(tmp_path / "MoNuSeg", rng)
    shutil.rmtree(tmp_path / "MoNuSeg" / "MoNuSegTestData")
    status = probe_data(DataConfig(dataset="monuseg"), tmp_path)
    assert status.counts == {"train": 2}
    assert status.missing.startswith("no test images")
