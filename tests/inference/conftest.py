"""Fixtures of the inference tests: a fresh tiny checkpoint and a folder of varied images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from odssam.config import ExperimentConfig, from_dict, to_dict
from odssam.engine.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint
from odssam.models.ods_sam import build_ods_sam
from odssam.models.sam import sam_weights_fingerprint

from inference_helpers import FOLDER_IMAGES, TINY_CONFIG


def save_fresh_checkpoint(path: Path) -> Path:
    """configs/tiny.yaml's model, untrained, saved in the training checkpoint format."""
    cfg = from_dict(ExperimentConfig, {"model": yaml.safe_load(TINY_CONFIG.read_text())["model"]})
    model = build_ods_sam(cfg.model)
    return save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": to_dict(cfg),
            "prompt_encoder": model.prompt_encoder.state_dict(),
            "sam_fingerprint": sam_weights_fingerprint(model.sam),
            "epoch": 0,
            "step": 0,
            "best_metric": None,
        },
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return save_fresh_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt")


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
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / "sub" / "nested.bmp")
    return folder
