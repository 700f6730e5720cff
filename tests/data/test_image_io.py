"""Decoding images and masks of every mode into uint8 RGB / bool."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from odssam.data.image_io import (
    binarize_mask,
    read_image,
    read_label_mask,
    read_mask,
    resize_image,
    resize_mask,
    to_uint8,
    write_png_atomic,
)
from odssam.errors import OdsSamError

from data_layouts import disk, save_jpeg_mask, save_minisblack_rgb_tiff
from helpers import random_rgb, read_pixels, save_image


def test_rgb_png_round_trips(tmp_path, rng):
    rgb = random_rgb(rng, 9, 7)
    image = read_image(save_image(rgb, tmp_path / "a.png"))
    assert image.dtype == np.uint8 and image.shape == (9, 7, 3)
    np.testing.assert_array_equal(image, rgb)


def test_grayscale_is_replicated_to_three_channels(tmp_path, rng):
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    image = read_image(save_image(gray, tmp_path / "g.png"))
    assert image.shape == (6, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_drops_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    image = read_image(save_image(rgba, tmp_path / "a.png"))
    np.testing.assert_array_equal(image, rgba[..., :3])


def test_palette_image_maps_through_its_palette(tmp_path, rng):
    rgb = random_rgb(rng, 8, 8)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette.save(tmp_path / "p.png")
    expected = np.asarray(palette.convert("RGB"))
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), expected)


def test_16_bit_image_is_scaled_to_8_bit(tmp_path):
    deep = np.array([[0, 257, 65535], [32896, 1000, 65280]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    image = read_image(tmp_path / "d.png")
    np.testing.assert_array_equal(image[..., 0], [[0, 1, 255], [128, 4, 254]])


def test_minisblack_rgb_tiff_needs_tifffile_and_is_read(tmp_path, rng):
    rgb = random_rgb(rng, 10, 12)
    path = save_minisblack_rgb_tiff(rgb, tmp_path / "1.tif")
    with pytest.raises(Exception):
        Image.open(path).load()  # the quirk: PIL rejects these files
    np.testing.assert_array_equal(read_image(path), rgb)


def test_lzw_tiff_falls_back_to_pil(tmp_path, rng):
    rgb = random_rgb(rng, 10, 12)
    path = save_image(rgb, tmp_path / "tile.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_image(path), rgb)


def test_planar_tiff_is_moved_channels_last(tmp_path, rng):
    rgb = random_rgb(rng, 10, 12)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), rgb)


def test_jpeg_mask_noise_is_thresholded(tmp_path):
    truth = disk(40, 40, (20, 20), 12)
    path = save_jpeg_mask(truth, tmp_path / "m.jpg")
    raw = np.asarray(Image.open(path).convert("L"))
    assert len(np.unique(raw)) > 2, "the JPEG should carry compression noise"
    mask = read_mask(path)
    assert mask.dtype == np.bool_
    assert (mask != truth).sum() <= 4


def test_zero_one_png_mask_uses_nonzero(tmp_path):
    truth = disk(12, 12, (6, 6), 4)
    mask = read_mask(save_image(truth.astype(np.uint8), tmp_path / "m.png"))
    np.testing.assert_array_equal(mask, truth)


def test_grey_mask_pixels_are_thresholded_at_127(tmp_path):
    values = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(read_mask(save_image(values, tmp_path / "m.png")), [[False, False, True, True]])


def test_coloured_palette_mask_uses_index(tmp_path):
    truth = disk(10, 10, (5, 5), 3)
    image = Image.fromarray(truth.astype(np.uint8), mode="L").convert("P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # red has luma 76 < 127
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), truth)


def test_grey_palette_mask_uses_grey_levels(tmp_path):
    indices = np.array([[0, 1, 2]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="L").convert("P")
    image.putpalette([0, 0, 0, 100, 100, 100, 255, 255, 255] + [0] * 759)
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), [[False, False, True]])


def test_16_bit_mask(tmp_path):
    values = np.array([[0, 65535, 30000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), [[False, True, False]])


def test_rgb_mask_uses_luma(tmp_path):
    values = np.zeros((1, 2, 3), dtype=np.uint8)
    values[0, 1] = 255
    np.testing.assert_array_equal(read_mask(save_image(values, tmp_path / "m.png")), [[False, True]])


def test_binarize_float_and_bool():
    np.testing.assert_array_equal(binarize_mask(np.array([[0.2, 0.7]])), [[False, True]])
    flags = np.array([[True, False]])
    assert binarize_mask(flags) is flags


def test_label_map_any_instance_is_foreground(tmp_path):
    labels = np.array([[0, 1, 2, 37]], dtype=np.uint8)
    np.testing.assert_array_equal(read_label_mask(save_image(labels, tmp_path / "a.bmp")), [[False, True, True, True]])


def test_to_uint8_float_ranges():
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.5, 1.0])), [0, 128, 255])
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 200.0, 300.0])), [0, 200, 255])


def test_missing_file_names_it(tmp_path):
    with pytest.raises(OdsSamError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")


def test_unreadable_file_names_it(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(OdsSamError, match="broken.png"):
        read_image(path)
    with pytest.raises(OdsSamError, match="broken.png"):
        read_mask(path)


def test_truncated_file_names_it(tmp_path, rng):
    path = save_image(random_rgb(rng, 32, 32), tmp_path / "cut.png")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(OdsSamError, match="cut.png"):
        read_image(path)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_unreadable_tiff_names_it(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00garbage")
    with pytest.raises(OdsSamError, match="bad.tif: cannot read TIFF"):
        read_image(path)


def test_resize_image_and_mask_to_square(rng):
    image = random_rgb(rng, 10, 20)
    mask = np.zeros((10, 20), dtype=bool)
    mask[:, 10:] = True
    assert resize_image(image, 8).shape == (8, 8, 3)
    resized = resize_mask(mask, 8)
    assert resized.dtype == np.bool_
    np.testing.assert_array_equal(resized[:, :4], False)
    np.testing.assert_array_equal(resized[:, 4:], True)


def test_write_png_atomic_leaves_no_temp_file(tmp_path):
    mask = disk(8, 8, (4, 4), 2)
    write_png_atomic(mask, tmp_path / "sub" / "m.png")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.png"]
    np.testing.assert_array_equal(read_pixels(tmp_path / "sub" / "m.png") == 255, mask)
