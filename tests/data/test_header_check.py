"""The quick pre-training check: what it finds from headers and file ends, on generated layouts."""

from __future__ import annotations

import numpy as np
import pytest

from odssam.data import check_dataset, index_dataset
from odssam.data.header_check import entry_issues, header_size
from odssam.data.index import Entry, IndexOptions
from odssam.errors import OdsSamError
from odssam.models.transforms import PreprocessSpec

from data_layouts import make_binary_folder
from helpers import random_rgb, save_image

LAYOUTS = [
    ("kvasir", "kvasir_root"),
    ("clinicdb", "clinicdb_root"),
    ("monuseg", "monuseg_root"),
    ("glas", "glas_root"),
    ("mvtec", "mvtec_root"),
    ("folder", "folder_root"),
    ("pranet", "pranet_root"),
]


def _entries(dataset: str, root) -> list[tuple[str, Entry]]:
    index = index_dataset(dataset, root, None, IndexOptions(include_good=True, every_category=True))
    return [(split, entry) for split, entries in index.splits.items() for entry in entries]


@pytest.mark.parametrize("dataset, fixture", LAYOUTS)
def test_generated_layouts_pass(request, dataset, fixture):
    entries = _entries(dataset, request.getfixturevalue(fixture))
    assert entries
    for split, entry in entries:
        assert entry_issues(entry, split, PreprocessSpec(256)) == [], entry


@pytest.mark.parametrize("dataset, fixture", LAYOUTS)
def test_header_size_is_the_decoded_size(request, dataset, fixture):
    from odssam.data import load_entry

    for _, entry in _entries(dataset, request.getfixturevalue(fixture)):
        assert header_size(entry.image_path) == load_entry(entry).original_size, entry.image_path


def _truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize(
    "dataset, fixture, which",
    [
        ("kvasir", "kvasir_root", "image"),  # JPEG
        ("kvasir", "kvasir_root", "mask"),  # JPEG mask
        ("clinicdb", "clinicdb_root", "image"),  # TIFF
        ("monuseg", "monuseg_root", "mask"),  # XML annotation
        ("glas", "glas_root", "image"),  # BMP
        ("glas", "glas_root", "mask"),  # BMP label map
        ("folder", "folder_root", "mask"),  # PNG
    ],
)
def test_a_truncated_file_is_found_as_the_full_check_finds_it(request, dataset, fixture, which):
    root = request.getfixturevalue(fixture)
    split, entry = _entries(dataset, root)[-1]
    path = _truncate(entry.image_path if which == "image" else entry.mask_path)
    issues = entry_issues(entry, split)
    assert [(issue.level, issue.path, issue.split) for issue in issues] == [("error", str(path), split)], issues
    full = check_dataset(dataset, root, progress=False)
    assert any(str(path) in str(issue) for issue in full.problems), full.format_text()


@pytest.mark.parametrize("cut, readable", [(4, True), (12, True), (100, False)])
def test_a_file_with_a_damaged_end_passes_exactly_when_it_decodes(tmp_path, rng, cut, readable):
    from odssam.data import read_image

    path = save_image(random_rgb(rng, 40, 40), tmp_path / "a.png")
    path.write_bytes(path.read_bytes()[:-cut])  # 4: the IEND CRC lost; 12: all of IEND; 100: image data
    if readable:
        assert header_size(path) == read_image(path).shape[:2] == (40, 40)
        return
    with pytest.raises(OdsSamError, match="a.png: cannot decode image data") as raised:
        header_size(path)
    with pytest.raises(OdsSamError, match="a.png: cannot decode image data") as decoding:
        read_image(path)
    assert str(raised.value) == str(decoding.value)


def test_jpeg_padding_after_its_end_marker_is_fine(tmp_path, rng):
    path = save_image(random_rgb(rng, 40, 40), tmp_path / "a.jpg")
    path.write_bytes(path.read_bytes() + b"\0" * 100)  # some cameras pad their files
    assert header_size(path) == (40, 40)


def test_mask_size_mismatch_and_too_elongated_image(tmp_path, rng):
    root = make_binary_folder(tmp_path / "own", rng, names=("a",))
    save_image(np.zeros((10, 10), dtype=bool), root / "masks" / "a.png")
    save_image(random_rgb(rng, 2, 1000), root / "images" / "a.png")
    [(split, entry)] = _entries("folder", root)
    fits = [issue.message for issue in entry_issues(entry, split, PreprocessSpec(256))]
    assert len(fits) == 1 and "size mismatch: mask is 10x10 (WxH) but image" in fits[0]  # 500:1 fits 256 px ...
    messages = [issue.message for issue in entry_issues(entry, split, PreprocessSpec(128))]
    assert len(messages) == 2 and messages[1] == fits[0]
    assert "1000x2 (WxH, 500:1)" in messages[0] and "leaves 0 px" in messages[0] and "up to 256:1" in messages[0]
    stretched = entry_issues(entry, split, PreprocessSpec(128, resize="stretch"))
    assert [issue.message for issue in stretched] == messages[1:]  # any shape stretches to a square


def test_missing_and_special_files(tmp_path, rng):
    import os

    root = make_binary_folder(tmp_path / "own", rng, names=("a", "b"))
    [(split, first), (_, second)] = _entries("folder", root)
    first.image_path.unlink()
    os.mkfifo(second.mask_path.with_suffix(".fifo"))
    second.mask_path.unlink()
    second.mask_path.with_suffix(".fifo").rename(second.mask_path)  # a named pipe: never opened
    assert [issue.message for issue in entry_issues(first, split)] == ["file not found"]
    assert "named pipe" in entry_issues(second, split)[0].message
