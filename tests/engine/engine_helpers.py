"""Shared helpers of the engine tests (importable from spawned worker processes too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from odssam.config import ModelConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"


def tiny_model_config() -> ModelConfig:
    """The model section of configs/tiny.yaml."""
    return load_config(TINY_CONFIG).model


def blob_sample(rng: np.random.Generator, height: int = 40, width: int = 56) -> tuple[np.ndarray, np.ndarray]:
    """A textured surface with one dark elliptic blob: (HxWx3 uint8 image, HxW bool mask)."""
    yy, xx = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    image = np.repeat(150 + 20 * rng.standard_normal((height, width, 1)), 3, axis=2)
    image[mask] -= 90
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_folder_split(folder: Path, count: int, rng: np.random.Generator, prefix: str) -> None:
    """``count`` generated PNG image/mask pairs in ``folder/{images,masks}``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, mask = blob_sample(rng)
        Image.fromarray(image).save(folder / "images" / f"{prefix}{index:02d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(folder / "masks" / f"{prefix}{index:02d}.png")
