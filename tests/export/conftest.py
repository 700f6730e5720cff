"""Fixtures of the export tests: a fresh tiny checkpoint and its ONNX export (made once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from odssam.cli.main import main
from odssam.config import ExperimentConfig, from_dict, to_dict
from odssam.engine.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint
from odssam.models.ods_sam import build_ods_sam
from odssam.models.sam import sam_weights_fingerprint

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def export_checkpoint(tmp_path_factory) -> Path:
    """configs/tiny.yaml's model with a perturbed prompt encoder (larger logits than at init)."""
    torch.set_num_threads(1)
    cfg = from_dict(ExperimentConfig, {"model": yaml.safe_load(TINY_CONFIG.read_text())["model"]})
    model = build_ods_sam(cfg.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.prompt_encoder.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path_factory.mktemp("checkpoint") / "best.pt"
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
def exported(export_checkpoint, tmp_path_factory):
    """``odssam export`` of the checkpoint: (exit code, output folder, stdout)."""
    output = tmp_path_factory.mktemp("onnx")
    code = main(["export", "--checkpoint", str(export_checkpoint), "--output", str(output), "--parity-batch", "3"])
    return code, output
