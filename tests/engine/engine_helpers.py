"""Shared helpers of the engine tests (importable from spawned worker processes too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import random_ellipse, save_image


def blob_sample(rng: np.random.Generator, height: int = 40, width: int = 56) -> tuple[np.ndarray, np.ndarray]:
    """A textured surface with one dark elliptic blob: (HxWx3 uint8 image, HxW bool mask)."""
    mask = random_ellipse((height, width), rng, centre=(0.3, 0.7), radius=(0.15, 0.3))
    image = np.repeat(150 + 20 * rng.standard_normal((height, width, 1)), 3, axis=2)
    image[mask] -= 90
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_folder_split(folder: Path, count: int, rng: np.random.Generator, prefix: str) -> None:
    """``count`` generated PNG image/mask pairs in ``folder/{images,masks}``."""
    for index in range(count):
        image, mask = blob_sample(rng)
        save_image(image, folder / "images" / f"{prefix}{index:02d}.png")
        save_image(mask, folder / "masks" / f"{prefix}{index:02d}.png")


def graph_reason(cfg, device, world_size: int = 1, cached: bool = True) -> str | None:
    """Why ``train`` keeps the step of ``cfg`` eager: the engine's checks with the model's own reason."""
    from odssam.engine.graphed_step import graph_unsupported_reason
    from odssam.models.registry import build_model

    model = build_model(cfg.model, feature_encoder_weights=False)
    return graph_unsupported_reason(cfg, device, world_size, cached, model.graph_unsupported_reason(cfg.train, device))
