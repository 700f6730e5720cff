"""``odssam data list | check | convert`` through the command-line entry point."""

from __future__ import annotations

import json

import numpy as np

from odssam.cli.main import main
from odssam.data import build_dataset

from data_layouts import monuseg_expected_mask
from helpers import read_pixels


def test_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "kvasir" in out and "ETIS-LaribPolypDB" in out
    assert main(["data", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 7


def test_check_clean_exits_zero(capsys, glas_root):
    assert main(["data", "check", "--dataset", "glas", "--root", str(glas_root)]) == 0
    out = capsys.readouterr().out
    assert "OK: 0 problem(s)" in out and "train" in out


def test_check_problems_exit_one_and_name_the_file(capsys, glas_root):
    folder = next(glas_root.iterdir())
    (folder / "testA_2.bmp").write_bytes(b"BM broken")
    assert main(["data", "check", "--dataset", "glas", "--root", str(glas_root)]) == 1
    out = capsys.readouterr().out
    assert "testA_2.bmp" in out and "PROBLEMS FOUND" in out


def test_check_json(capsys, mvtec_root):
    assert main(["data", "check", "--dataset", "mvtec", "--root", str(mvtec_root), "--category", "bottle", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and set(report["splits"]) == {"train", "test"}
    assert report["problems"] == []


def test_check_strict_fails_on_warnings(capsys, kvasir_root):
    assert main(["data", "check", "--dataset", "kvasir", "--root", str(kvasir_root)]) == 0
    assert main(["data", "check", "--dataset", "kvasir", "--root", str(kvasir_root), "--strict"]) == 1


def test_bad_category_is_a_clean_error(capsys, mvtec_root):
    assert main(["data", "check", "--dataset", "mvtec", "--root", str(mvtec_root), "--category", "cable"]) == 2
    err = capsys.readouterr().err
    assert "no MVTec AD category 'cable'" in err and "Traceback" not in err


def test_convert_monuseg_writes_binary_pngs(capsys, tmp_path, monuseg_root):
    out = tmp_path / "masks"
    assert main(["data", "convert", "--dataset", "monuseg", "--root", str(monuseg_root), "--out", str(out)]) == 0
    written = read_pixels(out / "train" / "masks" / "TCGA-AA-0001.png")
    assert set(np.unique(written)) == {0, 255}
    np.testing.assert_array_equal(written == 255, monuseg_expected_mask())
    assert (out / "test" / "masks" / "TCGA-BB-0003.png").is_file()
    assert "train: 2 masks written" in capsys.readouterr().out


def test_convert_glas_with_images_is_a_folder_dataset(tmp_path, glas_root):
    out = tmp_path / "glas-png"
    args = ["data", "convert", "--dataset", "glas", "--root", str(glas_root), "--out", str(out), "--images", "--image-size", "16"]
    assert main(args) == 0
    converted = build_dataset("folder", out, "train")
    original = build_dataset("glas", glas_root, "train", image_size=16)
    assert converted.names == sorted(original.names)
    for name in original.names:
        np.testing.assert_array_equal(
            converted[converted.names.index(name)].mask, original[original.names.index(name)].mask
        )
