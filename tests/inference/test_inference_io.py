"""Input expansion, contours and overlays, and the output writers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers import read_pixels, save_image
from PIL import Image

from odssam.data.synthetic import render_surface
from odssam.errors import OdsSamError
from odssam.inference import (
    Prediction,
    PredictionWriter,
    expand_inputs,
    mask_contour,
    overlay_image,
    overlay_thickness,
    read_predictions_csv,
    to_rgb,
    write_mask_png,
    write_probability_npy,
    write_probability_png,
)


def _touch_image(path, size=(4, 4)):
    return save_image(np.zeros(size + (3,), np.uint8), path)


# --------------------------------------------------------------------------- inputs


def test_folder_expansion_is_sorted_and_skips_sub_folders_and_hidden_files(image_folder):
    names = [item.name for item in expand_inputs([image_folder])]
    assert names == ["alpha", "broken", "deep16", "gray", "rgb", "tall"]


def test_recursive_expansion_keeps_the_sub_folder_in_the_name(image_folder):
    items = expand_inputs([image_folder], recursive=True)
    assert "sub/nested" in [item.name for item in items]


def test_globs_files_and_duplicates(image_folder):
    items = expand_inputs([str(image_folder / "*.png"), image_folder / "rgb.png", image_folder / "gray.jpg"])
    assert [item.name for item in items] == ["alpha", "broken", "deep16", "rgb", "gray"]
    assert items[-1].path == image_folder / "gray.jpg"


def test_colliding_names_get_unique_suffixes(tmp_path):
    for name in ("a.png", "a.jpg", "b.png"):
        _touch_image(tmp_path / "one" / name)
    _touch_image(tmp_path / "two" / "b.png")
    names = [item.name for item in expand_inputs([tmp_path / "one", tmp_path / "two"])]
    assert names == ["a", "a_png", "b", "b_png"]


def test_an_explicit_file_is_kept_whatever_its_extension(tmp_path):
    odd = tmp_path / "scan.data"
    odd.write_bytes(b"whatever")
    assert [item.path for item in expand_inputs([odd])] == [odd]


@pytest.mark.parametrize("kind", ["missing", "empty-folder", "no-match", "nothing"])
def test_bad_inputs_name_the_problem(tmp_path, kind):
    (tmp_path / "empty").mkdir()
    inputs = {
        "missing": [tmp_path / "absent.png"],
        "empty-folder": [tmp_path / "empty"],
        "no-match": [str(tmp_path / "*.jpg")],
        "nothing": [],
    }[kind]
    expected = {"missing": "absent.png", "empty-folder": "no image files", "no-match": "matches no image", "nothing": "no input"}
    with pytest.raises(OdsSamError, match=expected[kind]):
        expand_inputs(inputs)


def test_to_rgb_handles_planar_alpha_and_tensors():
    import torch

    rgba = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb(rgba), rgba[:, :, :3])
    np.testing.assert_array_equal(to_rgb(np.moveaxis(rgba[:, :, :3], -1, 0).copy()), rgba[:, :, :3])
    np.testing.assert_array_equal(to_rgb(torch.from_numpy(rgba[:, :, :3].copy())), rgba[:, :, :3])
    assert to_rgb(Image.fromarray(rgba)).flags.writeable


# --------------------------------------------------------------------------- contours and overlays


def test_contour_of_a_square_is_its_outer_ring():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    ring = mask_contour(mask, thickness=1)
    expected = mask.copy()
    expected[3:6, 3:6] = False
    np.testing.assert_array_equal(ring, expected)
    thick = mask_contour(mask, thickness=2)
    assert thick.sum() == 25 - 1 and not thick[4, 4]
    assert not mask_contour(np.zeros((5, 5), bool)).any()


def test_contour_touching_the_border_is_closed():
    mask = np.ones((4, 4), bool)
    assert mask_contour(mask).sum() == 12


def test_overlay_draws_the_contour_tints_inside_and_leaves_outside():
    image = np.full((10, 10, 3), 100, np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[3:8, 3:8] = True
    out = overlay_image(image, mask, color=(255, 0, 0), thickness=1, fill_alpha=0.5)
    assert tuple(out[3, 3]) == (255, 0, 0)
    assert tuple(out[5, 5]) == (178, 50, 50)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert image[5, 5, 0] == 100  # the input is not modified


@pytest.mark.parametrize("height, width", [(240, 320), (900, 1200)])
def test_default_overlay_fills_the_mask_and_leaves_the_rest_of_the_image(height, width):
    image, mask, _ = render_surface(np.random.default_rng(3), height, width, defect="blob")
    assert mask.any()
    out = overlay_image(image, mask)
    assert (out[mask] != image[mask]).any(axis=-1).all()  # every mask pixel is marked
    np.testing.assert_array_equal(out[~mask], image[~mask])
    band = overlay_thickness(mask.shape)
    contour = mask_contour(mask, band)
    assert (out[contour] == (0, 255, 255)).all()
    # Beyond the contour band the fill is translucent: the texture still shows through.
    interior = mask & ~contour
    assert interior.any() and np.unique(out[interior], axis=0).shape[0] > 1


def test_overlay_contour_is_2_to_3_px_on_common_sizes_and_grows_on_large_images():
    assert overlay_thickness((240, 320)) == 2
    assert overlay_thickness((576, 720)) == 2  # an endoscopy frame
    assert overlay_thickness((900, 1200)) == 3
    assert overlay_thickness((3000, 4000)) == 10


@pytest.mark.parametrize("surface", [(220, 120, 130), (150, 40, 50), (128, 128, 128), (180, 185, 190)])
def test_default_overlay_reads_on_tissue_and_on_grey_metal(surface):
    """Pink/red tissue and grey metal: the fill changes the pixel by a large step (the old red tint did not)."""
    image = np.empty((40, 40, 3), np.uint8)
    image[:] = surface
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    out = overlay_image(image, mask)
    change = np.abs(out[20, 20].astype(int) - image[20, 20].astype(int)).sum()
    assert change >= 120, (surface, tuple(out[20, 20]))


# --------------------------------------------------------------------------- writers


def test_mask_and_probability_files_round_trip(tmp_path):
    probability = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    mask = probability > 0.5
    write_mask_png(mask, tmp_path / "m.png")
    write_probability_png(probability, tmp_path / "p.png")
    write_probability_npy(probability, tmp_path / "p.npy")
    np.testing.assert_array_equal(read_pixels(tmp_path / "m.png"), mask * 255)
    np.testing.assert_allclose(read_pixels(tmp_path / "p.png") / 255.0, probability, atol=0.5 / 255)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), probability)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def _prediction(name, height, width, value):
    probability = np.full((height, width), value, np.float32)
    mask = probability > 0.5
    return Prediction(name, probability, mask, value, float(mask.mean()), source=f"/in/{name}.png")


@pytest.mark.parametrize("workers", [0, 2])
def test_prediction_writer_writes_every_output_and_the_csv(tmp_path, workers):
    image = np.zeros((6, 8, 3), np.uint8)
    with PredictionWriter(tmp_path, probability_format="npy", workers=workers) as writer:
        writer.submit(_prediction("low", 6, 8, 0.25), image)
        writer.submit(_prediction("sub/high", 6, 8, 0.75), image)
    assert read_pixels(tmp_path / "masks" / "sub" / "high.png").shape == (6, 8)
    assert read_pixels(tmp_path / "overlays" / "low.png").shape == (6, 8, 3)
    assert np.load(tmp_path / "probabilities" / "sub" / "high.npy").shape == (6, 8)
    rows = read_predictions_csv(tmp_path / "predictions.csv")
    assert [(r["name"], r["height"], r["width"]) for r in rows] == [("low", "6", "8"), ("sub/high", "6", "8")]
    assert [float(r["max_score"]) for r in rows] == [0.25, 0.75]
    assert [float(r["area_fraction"]) for r in rows] == [0.0, 1.0]
    assert rows[0]["source"] == "/in/low.png"


def test_prediction_writer_switches(tmp_path):
    with PredictionWriter(tmp_path, probability_format="none", overlays=False, workers=0) as writer:
        writer.submit(_prediction("only", 3, 3, 0.9))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "predictions.csv"]
    with pytest.raises(OdsSamError, match="probability format"):
        PredictionWriter(tmp_path, probability_format="jpeg")
