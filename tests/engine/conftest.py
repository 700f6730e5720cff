"""Fixtures of the engine tests: a generated folder dataset and the tiny experiment config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import write_folder_split
from helpers import TINY_CONFIG, tiny_model_config

from odssam.config import load_config
from odssam.models.ods_sam import build_ods_sam


@pytest.fixture(scope="session")
def folder_dataset(tmp_path_factory) -> Path:
    """``train/`` (6 images) and ``test/`` (2 images) in the folder-dataset layout."""
    root = tmp_path_factory.mktemp("folder_dataset")
    rng = np.random.default_rng(0)
    write_folder_split(root / "train", 6, rng, "train")
    write_folder_split(root / "test", 2, rng, "test")
    return root


@pytest.fixture(scope="session")
def tiny_model():
    """The model of configs/tiny.yaml (random weights), in eval mode."""
    torch.set_num_threads(1)
    return build_ods_sam(tiny_model_config()).eval()


@pytest.fixture
def tiny_config(folder_dataset, tmp_path):
    """configs/tiny.yaml on the generated dataset, writing under ``tmp_path``."""
    torch.set_num_threads(1)
    return load_config(
        TINY_CONFIG,
        [
            f"data.root={folder_dataset}",
            f"train.output_dir={tmp_path / 'runs'}",
            f"train.cache_dir={tmp_path / 'cache'}",
        ],
    )


@pytest.fixture
def deterministic_cuda():
    """Deterministic CUDA kernels for the test (restored afterwards); no effect on the CPU."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
