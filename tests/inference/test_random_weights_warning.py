"""One warning line wherever a model with random pretrained weights is loaded or built."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from helpers import REPO_ROOT, TINY_CONFIG, checkpoint_payload, save_image, tiny_model_config

import odssam
from odssam.checkpoint import load_model_from_checkpoint, save_checkpoint
from odssam.cli.main import main
from odssam.config import ExperimentConfig
from odssam.models.ods_sam import build_ods_sam
from odssam.models.random_weights import random_sam_text, random_weights_message

RANDOM_SAM = "SAM vit_micro: RANDOM weights (init_seed 0): scores are not meaningful"


def _warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


@pytest.fixture(scope="module")
def file_sam_checkpoint(tmp_path_factory):
    """A tiny run whose SAM weights came from a file (the same random weights, saved)."""
    folder = tmp_path_factory.mktemp("sam-from-file")
    random_model = build_ods_sam(tiny_model_config())
    torch.save(random_model.segmenter.sam.state_dict(), folder / "sam_vit_micro.pth")
    sam_cfg = replace(tiny_model_config().sam, checkpoint=str(folder / "sam_vit_micro.pth"))
    model_cfg = replace(tiny_model_config(), sam=sam_cfg)
    cfg = ExperimentConfig(model=model_cfg)
    return save_checkpoint(folder / "best.pt", checkpoint_payload(build_ods_sam(cfg.model), cfg))


def test_message_uses_the_training_wording_and_names_every_random_part(file_sam_checkpoint):
    model_cfg = tiny_model_config()
    model = build_ods_sam(model_cfg)
    assert random_sam_text(model_cfg.sam) == "RANDOM weights (init_seed 0): scores are not meaningful"
    assert random_weights_message(model, model_cfg, trained=True) == RANDOM_SAM
    assert random_weights_message(model, model_cfg, trained=False) == (
        "RANDOM weights: SAM vit_micro (init_seed 0) and feature encoder "
        "(no model.prompt_encoder.feature_encoder.checkpoint): scores are not meaningful"
    )
    sam_from_file, sam_file_cfg = load_model_from_checkpoint(file_sam_checkpoint)
    assert random_weights_message(sam_from_file, sam_file_cfg.model, trained=True) is None
    assert random_weights_message(sam_from_file, sam_file_cfg.model, trained=False) == (
        "RANDOM weights: feature encoder (no model.prompt_encoder.feature_encoder.checkpoint): "
        "scores are not meaningful"
    )
    sam_from_file.trainable.feature_encoder_weights = "EfficientViT-SAM-L1 from efficientvit_sam_l1.pt"
    assert random_weights_message(sam_from_file, sam_file_cfg.model, trained=False) is None


def test_a_baseline_without_sam_names_its_own_random_part():
    unet_cfg = replace(tiny_model_config(), name="unet")
    trainable = SimpleNamespace(weights_description="random initialisation")
    without_sam = SimpleNamespace(segmenter=None, trainable=trainable)
    assert random_weights_message(without_sam, unet_cfg, trained=True) is None
    assert random_weights_message(without_sam, unet_cfg, trained=False) == (
        "RANDOM weights: unet (no starting weights): scores are not meaningful"
    )


def test_odssam_load_warns_once_on_random_sam_weights(tiny_checkpoint, caplog):
    with caplog.at_level(logging.WARNING):
        odssam.load(tiny_checkpoint, device="cpu")
    assert _warnings(caplog) == [RANDOM_SAM]


def test_loading_sam_weights_from_a_file_does_not_warn(file_sam_checkpoint, caplog):
    with caplog.at_level(logging.WARNING):
        odssam.load(file_sam_checkpoint, device="cpu")
        load_model_from_checkpoint(file_sam_checkpoint)  # export and eval load through it
    assert _warnings(caplog) == []


def test_export_and_eval_loading_warns(tiny_checkpoint, caplog):
    with caplog.at_level(logging.WARNING):
        load_model_from_checkpoint(tiny_checkpoint)
    assert _warnings(caplog) == [RANDOM_SAM]


def test_predict_cli_warns(tiny_checkpoint, tmp_path, caplog):
    image = save_image(torch.zeros(20, 30, 3, dtype=torch.uint8).numpy(), tmp_path / "a.png")
    with caplog.at_level(logging.WARNING):
        code = main(["predict", "--checkpoint", str(tiny_checkpoint), str(image), "--output", str(tmp_path / "out"),
                     "--device", "cpu", "--no-progress"])
    assert code == 0
    assert _warnings(caplog) == [RANDOM_SAM]


def test_forward_cli_warns_about_sam_and_the_feature_encoder(caplog, capsys):
    with caplog.at_level(logging.WARNING):
        assert main(["forward", "--config", str(TINY_CONFIG), "--device", "cpu"]) == 0
    assert _warnings(caplog) == [
        "RANDOM weights: SAM vit_micro (init_seed 0) and feature encoder "
        "(no model.prompt_encoder.feature_encoder.checkpoint): scores are not meaningful"
    ]


def test_without_logging_set_up_the_warning_is_one_line_on_stderr():
    """A user's script or the CLI configures no logging: the line still reaches stderr, alone."""
    script = (
        "from types import SimpleNamespace as NS\n"
        "from odssam.models.random_weights import warn_random_weights\n"
        "model = NS(segmenter=NS(weights_source=None), trainable=None)\n"
        "cfg = NS(name='ods_sam', sam=NS(variant='vit_h', init_seed=0))\n"
        "warn_random_weights(model, cfg, trained=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src")),
    )
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr == "SAM vit_h: RANDOM weights (init_seed 0): scores are not meaningful\n"
