"""The synthetic MVTec-AD-style dataset: layout, masks, determinism, and the MVTec loader reading it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import read_pixels

from odssam.data import build_dataset
from odssam.data.synthetic import DEFECTS, TEXTURES, render_surface
from odssam.demo.synthetic import generate_dataset
from odssam.errors import OdsSamError


@pytest.mark.parametrize("texture", TEXTURES)
@pytest.mark.parametrize("defect", DEFECTS)
def test_defects_change_the_image_where_the_mask_is(texture, defect):
    image, mask, name = render_surface(np.random.default_rng(1), 96, 128, texture, defect)
    clean, empty, good = render_surface(np.random.default_rng(1), 96, 128, texture, None)
    assert name == defect and good == "good"
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8 and mask.shape == (96, 128)
    assert not empty.any()
    assert 0 < mask.mean() < 0.3
    change = np.abs(image.astype(int) - clean.astype(int)).sum(-1)
    assert change[mask].mean() > 40  # a visible defect...
    assert change[~mask].mean() < 5  # ...and the same texture elsewhere


def test_layout_counts_and_sizes(tmp_path):
    dataset = generate_dataset(tmp_path, "wood", per_defect=3, good=2, image_size=48, seed=4)
    folder = dataset.category_dir
    assert len(list((folder / "train" / "good").glob("*.png"))) == 2
    assert len(list((folder / "test" / "good").glob("*.png"))) == 2
    for defect in DEFECTS:
        images = sorted((folder / "test" / defect).glob("*.png"))
        masks = sorted((folder / "ground_truth" / defect).glob("*_mask.png"))
        assert [p.stem for p in images] == ["000", "001", "002"]
        assert [p.stem for p in masks] == ["000_mask", "001_mask", "002_mask"]
        mask = read_pixels(masks[0])
        assert mask.shape == (48, 48) and set(np.unique(mask)) == {0, 255}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    first = generate_dataset(tmp_path / "a", per_defect=1, good=1, image_size=40, seed=0).category_dir
    again = generate_dataset(tmp_path / "b", per_defect=1, good=1, image_size=40, seed=0).category_dir
    other = generate_dataset(tmp_path / "c", per_defect=1, good=1, image_size=40, seed=1).category_dir
    relative = "test/blob/000.png"
    assert (first / relative).read_bytes() == (again / relative).read_bytes()
    assert (first / relative).read_bytes() != (other / relative).read_bytes()


def test_the_mvtec_loader_reads_it_with_the_supervised_split(tmp_path):
    generate_dataset(tmp_path, "fabric", per_defect=4, good=1, image_size=40)
    train = build_dataset("mvtec", tmp_path, "train", category="fabric")
    test = build_dataset("mvtec", tmp_path, "test", category="fabric")
    assert len(train) == len(test) == 6  # half of each defect type's four images
    sample = test[0]
    assert sample.image.shape == (40, 40, 3) and sample.mask.any()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"texture": "marble"}, "texture"), ({"defects": ["dent"]}, "defects"), ({"per_defect": 0}, "per_defect")],
    ids=["texture", "defect", "count"],
)
def test_bad_settings_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(OdsSamError, match=message):
        generate_dataset(tmp_path, **kwargs)
