"""``check_dataset``: per-split summaries and every problem, on generated layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from odssam.data import check_dataset

from helpers import save_image


@pytest.mark.parametrize(
    "dataset, fixture, expected_counts",
    [
        ("kvasir", "kvasir_root", {"train": 4, "test": 2}),
        ("clinicdb", "clinicdb_root", {"train": 3, "test": 2}),
        ("monuseg", "monuseg_root", {"train": 2, "test": 1}),
        ("glas", "glas_root", {"train": 3, "test": 3}),
        ("mvtec", "mvtec_root", {"bottle/train": 4, "bottle/test": 5}),
        ("folder", "folder_root", {"train": 2, "test": 3}),
        (
            "pranet",
            "pranet_root",
            {"train": 3, "test/Kvasir": 1, "test/CVC-ClinicDB": 2, "test/CVC-ColonDB": 1,
             "test/ETIS-LaribPolypDB": 2, "test/CVC-300": 1},
        ),
    ],
)
def test_generated_layouts_check_clean(request, dataset, fixture, expected_counts):
    report = check_dataset(dataset, request.getfixturevalue(fixture), progress=False)
    assert report.ok, report.format_text()
    assert {key: stats.count for key, stats in report.splits.items()} == expected_counts
    for stats in report.splits.values():
        assert stats.readable == stats.count
    json.dumps(report.to_dict())  # machine-readable as is


def test_statistics(kvasir_root):
    report = check_dataset("kvasir", kvasir_root, progress=False)
    train = report.splits["train"]
    assert train.expected == 900 and report.splits["test"].expected == 100
    assert train.height_range == (24, 36) and train.width_range == (24, 40)
    assert train.distinct_sizes == 3
    low, high = train.foreground_range
    assert 0.2 < low <= train.foreground_mean <= high < 0.5  # a disk of radius min(h, w) / 3
    assert train.empty_masks == 0
    assert any("900 images of the PraNet Kvasir-SEG train list" in str(w) for w in report.warnings)


def test_mvtec_check_counts_good_images(mvtec_root):
    report = check_dataset("mvtec", mvtec_root, progress=False)
    empty = sum(stats.empty_masks for stats in report.splits.values())
    assert empty == 2  # test/good images are read too
    assert any("absent of the 15" in note for note in report.notes)


def test_every_problem_is_reported_with_its_file(kvasir_root, folder_root):
    names = sorted(p.stem for p in (kvasir_root / "images").iterdir())
    (kvasir_root / "masks" / f"{names[0]}.jpg").unlink()
    (kvasir_root / "images" / f"{names[1]}.jpg").write_bytes(b"garbage")
    save_image(np.zeros((3, 3), dtype=np.uint8), kvasir_root / "masks" / f"{names[2]}.jpg")
    (kvasir_root / "masks" / "stray.jpg").write_bytes(b"")
    report = check_dataset("kvasir", kvasir_root, progress=False)
    assert not report.ok
    problems = [str(issue) for issue in report.problems]
    assert len(problems) == 3
    assert any(f"{names[0]}.jpg: no mask" in p for p in problems)
    assert any(f"{names[1]}.jpg" in p and "not a readable image" in p for p in problems)
    assert any("size mismatch" in p and f"masks/{names[2]}.jpg" in p for p in problems)
    assert any("stray.jpg: mask without an image" in str(w) for w in report.warnings)
    text = report.format_text()
    assert "PROBLEMS FOUND: 3 problem(s)" in text and f"problem: {kvasir_root}/images/{names[0]}.jpg" in text


def test_empty_folder_is_a_problem(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    report = check_dataset("folder", tmp_path, progress=False)
    assert not report.ok and "no image files" in str(report.problems[0])


def test_missing_root_is_a_problem(tmp_path):
    report = check_dataset("glas", tmp_path / "missing", progress=False)
    assert [str(p) for p in report.problems] == [f"{tmp_path / 'missing'}: dataset folder not found"]


def test_mvtec_root_without_categories(tmp_path):
    report = check_dataset("mvtec", tmp_path, progress=False)
    assert not report.ok and "no MVTec AD category folders" in str(report.problems[0])
