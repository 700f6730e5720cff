"""Packaged PraNet lists, seeded splits and split files."""

from __future__ import annotations

import pytest

from odssam.data.splits import (
    fraction_split,
    hold_out_validation,
    packaged_split_names,
    read_split_file,
    write_split_file,
)
from odssam.errors import OdsSamError


@pytest.mark.parametrize(
    "dataset, train_count, test_count", [("kvasir", 900, 100), ("clinicdb", 550, 62)]
)
def test_packaged_pranet_lists(dataset, train_count, test_count):
    train = packaged_split_names(f"{dataset}_train")
    test = packaged_split_names(f"{dataset}_test")
    assert (len(train), len(test)) == (train_count, test_count)
    assert len(set(train)) == train_count and not set(train) & set(test)


def test_unknown_packaged_list():
    with pytest.raises(OdsSamError, match="no packaged split list"):
        packaged_split_names("nope_train")


def test_hold_out_validation_is_seeded_and_keeps_order():
    names = [f"n{i:02d}" for i in range(20)]
    train, val = hold_out_validation(names, 6, seed=0)
    assert len(train) == 14 and len(val) == 6 and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)
    assert hold_out_validation(names, 6, seed=0) == (train, val)
    assert hold_out_validation(names, 6, seed=1)[1] != val
    assert hold_out_validation(names, 0, seed=0) == (names, [])


def test_hold_out_validation_rejects_bad_counts():
    with pytest.raises(OdsSamError, match="leaves no training images"):
        hold_out_validation(["a", "b"], 2, seed=0)
    with pytest.raises(OdsSamError, match=">= 0"):
        hold_out_validation(["a", "b"], -1, seed=0)


def test_fraction_split_counts_and_seed():
    names = [str(i) for i in range(10)]
    train, test = fraction_split(names, 0.3, 0, "bottle", "crack")
    assert len(test) == 3 and len(train) == 7 and set(train) | set(test) == set(names)
    assert fraction_split(names, 0.3, 0, "bottle", "crack") == (train, test)
    assert fraction_split(names, 0.3, 0, "bottle", "broken") != (train, test)


def test_fraction_split_keeps_one_on_each_side():
    assert fraction_split(["a", "b"], 0.1, 0) in ((["a"], ["b"]), (["b"], ["a"]))
    assert fraction_split(["a", "b", "c"], 1.0, 0) == ([], ["a", "b", "c"])
    with pytest.raises(OdsSamError, match="test_fraction"):
        fraction_split(["a"], 1.5, 0)


def test_split_file_round_trip(tmp_path):
    record = {"dataset": "mvtec", "splits": {"train": ["a"], "val": [], "test": ["b"]}}
    path = write_split_file(record, tmp_path / "run" / "split.json")
    assert read_split_file(path) == record
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a valid JSON split file"),
        ('{"dataset": "x"}', "needs a 'splits' mapping"),
        ('{"splits": {"holdout": []}}', "unknown split 'holdout'"),
        ('{"splits": {"train": "a"}}', "must be a list of sample names"),
        ('{"splits": {"train": ["a", "a"]}}', "lists a name twice"),
    ],
)
def test_bad_split_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(OdsSamError, match=message) as caught:
        read_split_file(path)
    assert "split.json" in str(caught.value)


def test_missing_split_file(tmp_path):
    with pytest.raises(OdsSamError, match="split file not found"):
        read_split_file(tmp_path / "none.json")
