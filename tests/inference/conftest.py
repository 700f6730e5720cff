"""Fixtures of the inference tests: a fresh tiny checkpoint and a folder of varied images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_rgb, save_tiny_checkpoint
from PIL import Image

from inference_helpers import FOLDER_IMAGES


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """configs/tiny.yaml's model, untrained, saved in the training checkpoint format."""
    torch.set_num_threads(1)
    return save_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """PNG RGB, TIFF, greyscale JPEG, 16-bit PNG, RGBA PNG, one corrupt PNG and an image in a sub-folder."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)

    def pixels(name: str, channels: int | None = 3) -> np.ndarray:
        shape = FOLDER_IMAGES[name] + ((channels,) if channels else ())
        return rng.integers(0, 256, shape, dtype=np.uint8)

    Image.fromarray(pixels("rgb")).save(folder / "rgb.png")
    Image.fromarray(pixels("tall")).save(folder / "tall.tif")
    Image.fromarray(pixels("gray", None)).save(folder / "gray.jpg")
    Image.fromarray(pixels("deep16", None).astype(np.uint16) * 257).save(folder / "deep16.png")
    Image.fromarray(pixels("alpha", 4)).save(folder / "alpha.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "sub").mkdir()
    Image.fromarray(random_rgb(rng, 20, 20)).save(folder / "sub" / "nested.bmp")
    return folder
