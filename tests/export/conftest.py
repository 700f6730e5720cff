"""Fixtures of the export tests: a fresh tiny checkpoint and its ONNX export (made once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import save_tiny_checkpoint

from odssam.cli.main import main


@pytest.fixture(scope="session")
def export_checkpoint(tmp_path_factory) -> Path:
    """configs/tiny.yaml's model with a perturbed prompt encoder (larger logits than at init)."""
    torch.set_num_threads(1)
    return save_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt", perturbation=0.05)


@pytest.fixture(scope="session")
def exported(export_checkpoint, tmp_path_factory):
    """``odssam export`` of the checkpoint: (exit code, output folder)."""
    output = tmp_path_factory.mktemp("onnx")
    code = main(["export", "--checkpoint", str(export_checkpoint), "--output", str(output), "--parity-batch", "3"])
    return code, output
