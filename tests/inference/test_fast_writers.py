"""The fast prediction writers give the bytes of the plain reference code; the write pool loses no error."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers import random_ellipse, random_rgb
from PIL import Image

from odssam.data.image_io import write_png_atomic
from odssam.data.synthetic import render_surface
from odssam.inference import (
    mask_contour,
    overlay_image,
    overlay_thickness,
    write_mask_png,
    write_overlay_png,
    write_probability_png,
)
from odssam.inference.io import probability_to_uint8
from odssam.inference.write_pool import WritePool


# --------------------------------------------------------------------------- the reference code


def reference_contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """3x3 erosions, one per step of thickness (the code the separable erosion replaced)."""
    interior = mask
    for _ in range(max(1, thickness)):
        padded = np.pad(interior, 1, constant_values=False)
        eroded = interior.copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                eroded &= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
        interior = eroded
    return mask & ~interior


def reference_overlay(image, mask, color=(0, 255, 255), thickness=None, fill_alpha=0.4) -> np.ndarray:
    """Pixel-by-pixel fill through fancy indexing (the code the lookup table replaced)."""
    thickness = overlay_thickness(mask.shape) if thickness is None else thickness
    out = image.copy()
    if fill_alpha > 0 and mask.any():
        inside = out[mask].astype(np.float32)
        out[mask] = np.rint((1 - fill_alpha) * inside + fill_alpha * np.array(color, dtype=np.float32)).astype(np.uint8)
    out[reference_contour(mask, thickness)] = np.array(color, dtype=np.uint8)
    return out


def _masks(rng: np.random.Generator, height: int, width: int) -> dict[str, np.ndarray]:
    ellipse = random_ellipse((height, width), rng, (0.3, 0.7), (0.2, 0.4))
    border = np.zeros((height, width), bool)
    border[: height // 2, : width // 3] = True  # touches two borders
    return {
        "ellipse": ellipse,
        "noise": rng.random((height, width)) > 0.3,  # many small holes and islands
        "border": border,
        "full": np.ones((height, width), bool),
        "empty": np.zeros((height, width), bool),
    }


@pytest.mark.parametrize("size", [(53, 62), (31, 7), (1, 9), (130, 101)])
@pytest.mark.parametrize("thickness", [1, 2, 3, 5])
def test_contour_equals_the_iterated_3x3_erosion(size, thickness):
    rng = np.random.default_rng(size[0] * 10 + thickness)
    for name, mask in _masks(rng, *size).items():
        np.testing.assert_array_equal(mask_contour(mask, thickness), reference_contour(mask, thickness), err_msg=name)


@pytest.mark.parametrize(
    "color, fill_alpha, thickness",
    [((0, 255, 255), 0.4, None), ((255, 0, 0), 0.5, 1), ((17, 130, 250), 0.25, 3), ((0, 255, 0), 0.0, 2), ((9, 9, 9), 1.0, 2)],
)
def test_overlay_equals_the_pixel_by_pixel_fill(color, fill_alpha, thickness):
    rng = np.random.default_rng(7)
    image = random_rgb(rng, 97, 143)
    image[0, :256 // 3, :] = np.arange(256 // 3 * 3, dtype=np.uint8).reshape(-1, 3)  # every byte value occurs
    for name, mask in _masks(rng, 97, 143).items():
        out = overlay_image(image, mask, color=color, thickness=thickness, fill_alpha=fill_alpha)
        assert out.dtype == np.uint8 and out.flags.writeable
        np.testing.assert_array_equal(out, reference_overlay(image, mask, color, thickness, fill_alpha), err_msg=name)


@pytest.mark.parametrize("height, width", [(530, 622), (61, 45)])
def test_written_files_have_the_reference_bytes(tmp_path, height, width):
    """The PNG files are those the plain code wrote (same pixels, same encoder settings)."""
    rng = np.random.default_rng(height)
    image = render_surface(rng, height, width)[0]
    probability = rng.random((height, width), dtype=np.float32)
    probability[:3, :3] = [[0.0, 1.0, 0.5], [1 / 510, 0.999, 0.002], [np.float32(0.7), 0.3, 0.25]]
    mask = probability > 0.5
    write_mask_png(mask, tmp_path / "mask.png")
    write_png_atomic(mask, tmp_path / "mask_ref.png", compress_level=1)
    write_probability_png(probability, tmp_path / "probability.png")
    reference_probability = np.clip(np.rint(probability * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(probability_to_uint8(probability), reference_probability)
    write_png_atomic(reference_probability, tmp_path / "probability_ref.png", compress_level=1)
    write_overlay_png(image, mask, tmp_path / "overlay.png")
    write_png_atomic(reference_overlay(image, mask), tmp_path / "overlay_ref.png", compress_level=1)
    for kind in ("mask", "probability", "overlay"):
        assert (tmp_path / f"{kind}.png").read_bytes() == (tmp_path / f"{kind}_ref.png").read_bytes(), kind
    with Image.open(tmp_path / "overlay.png") as written:
        assert written.mode == "RGB" and written.size == (width, height)


# --------------------------------------------------------------------------- the write pool


@pytest.mark.parametrize("threads", [0, 3])
def test_write_pool_finishes_every_job_before_close_returns(threads):
    done = []
    lock = threading.Lock()

    def job(index):
        time.sleep(0.002)
        with lock:
            done.append(index)

    with WritePool(threads, max_pending=4) as pool:
        for index in range(20):
            pool.submit(job, index)
            assert len(pool._pending) < 4  # bounded: submit waits for the oldest jobs
    assert sorted(done) == list(range(20))


def test_write_pool_raises_a_failed_job_on_the_callers_thread():
    def job(index):
        if index == 2:
            raise OSError(f"disk full at {index}")

    pool = WritePool(2, max_pending=100)  # nothing waits in submit: the error must come from close
    for index in range(5):
        pool.submit(job, index)
    with pytest.raises(OSError, match="disk full at 2"):
        pool.close()
    assert pool._executor is None


def test_write_pool_raises_in_submit_once_the_queue_is_full():
    pool = WritePool(1, max_pending=2)
    with pytest.raises(ValueError, match="bad entry"):
        for index in range(10):
            pool.submit(lambda i: (_ for _ in ()).throw(ValueError("bad entry")) if i == 0 else None, index)
    pool.cancel()


def test_prediction_writer_uses_one_thread_per_core_up_to_8(tmp_path, monkeypatch):
    from odssam.inference import PredictionWriter
    from odssam.inference import write_pool

    for cores, expected in ((2, 2), (16, 8), (None, 1)):
        monkeypatch.setattr(write_pool.os, "cpu_count", lambda cores=cores: cores)
        writer = PredictionWriter(tmp_path / str(cores))
        assert writer._pool.threads == expected and writer._pool.max_pending == max(4, 4 * expected)
        writer.close()
