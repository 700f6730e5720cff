"""The baselines through the same commands as ODS-SAM: train, eval, predict, export, profile, forward.

Only ``model.name`` (and, for a CPU-sized AutoSAM, its ``autosam`` section) changes in the
tiny config: nothing in the engine, inference or export names a baseline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY_CONFIG, read_pixels, write_blob_split

from odssam.checkpoint import load_checkpoint, load_model_from_checkpoint
from odssam.cli.main import main
from odssam.models.baselines.autosam import AutoSamPromptEncoder
from odssam.models.baselines.noprompt import NoPromptEncoder, no_mask_embedding

BASELINES = {
    "sam_noprompt": ([], NoPromptEncoder),
    "autosam": (["model.prompt_encoder.autosam.backbone=hardnet_tiny", "model.prompt_encoder.autosam.top_channels=32"],
                AutoSamPromptEncoder),
}


def with_settings(arguments: list[str], settings: list[str]) -> list[str]:
    return arguments + [item for setting in settings for item in ("--set", setting)]


@pytest.mark.parametrize("name", BASELINES)
def test_train_eval_predict_export(name, tmp_path, capsys):
    torch.set_num_threads(1)
    extra, encoder_type = BASELINES[name]
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    write_blob_split(data / "train", 4, rng)
    write_blob_split(data / "test", 2, rng)
    settings = [
        f"model.name={name}", f"data.root={data}", f"train.output_dir={tmp_path / 'runs'}",
        f"train.cache_dir={tmp_path / 'cache'}", "train.epochs=1", *extra,
    ]
    train = ["train", "--config", str(TINY_CONFIG), "--device", "cpu", "--no-progress"]
    assert main(with_settings(train, settings)) == 0, capsys.readouterr().err
    checkpoint = tmp_path / "runs" / "tiny" / "last.pt"
    stored = load_checkpoint(checkpoint)
    assert stored["config"]["model"]["name"] == name and stored["step"] == 2  # 1 epoch of 2 batches of 2
    model, _ = load_model_from_checkpoint(checkpoint, device="cpu")
    assert isinstance(model.prompt_encoder, encoder_type)
    for key, value in model.prompt_encoder.state_dict().items():
        assert torch.equal(value, stored["prompt_encoder"][key]), key
    if name == "sam_noprompt":  # trained away from the no-mask embedding it started at
        start = no_mask_embedding(model.segmenter).reshape(1, 256, 1, 1).expand_as(model.prompt_encoder.embedding)
        assert not torch.equal(model.prompt_encoder.embedding, start)

    assert main(["eval", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "eval"),
                 "--device", "cpu", "--no-progress"]) == 0, capsys.readouterr().err
    assert "dice@0.5" in (tmp_path / "eval" / "report.md").read_text()

    assert main(["predict", "--checkpoint", str(checkpoint), str(data / "test" / "images"),
                 "--output", str(tmp_path / "predict"), "--device", "cpu", "--no-progress"]) == 0
    maps = sorted((tmp_path / "predict" / "probabilities").iterdir())
    assert [p.stem for p in maps] == ["00", "01"] and read_pixels(maps[0]).shape[:2] == (40, 56)

    exported = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(exported)]) == 0, capsys.readouterr().err
    metadata = json.loads((exported / "odssam_onnx.json").read_text())
    assert {"image_encoder.onnx", "prompt_decoder.onnx"} <= {p.name for p in exported.iterdir()}
    assert metadata["parity"]["max_abs_diff_logits"] < 1e-3


def test_profile_reports_autosam_at_table7_size(capsys):
    arguments = ["profile", "--json", "--set", "model.name=autosam", "--set", "model.sam.variant=vit_micro",
                 "--set", "model.sam.image_size=256"]
    assert main(arguments) == 0, capsys.readouterr().err
    learnable = json.loads(capsys.readouterr().out)["learnable"]
    assert learnable["params"] == 88_219_548
    assert [child["name"] for child in learnable["children"]] == ["backbone", "decoder"]
    assert learnable["flops"] == sum(child["flops"] for child in learnable["children"]) > 100e9
    assert learnable["scan_flops"] == 0


def test_profile_reports_sam_noprompt(capsys):
    arguments = ["profile", "--json", "--set", "model.name=sam_noprompt", "--set", "model.sam.variant=vit_micro",
                 "--set", "model.sam.image_size=256"]
    assert main(arguments) == 0, capsys.readouterr().err
    learnable = json.loads(capsys.readouterr().out)["learnable"]
    assert (learnable["params"], learnable["flops"]) == (256 * 64 * 64, 0)


@pytest.mark.parametrize("name", BASELINES)
def test_forward_on_a_generated_image(name, capsys):
    settings = ["model.sam.variant=vit_micro", "model.sam.image_size=256", "model.prompt_encoder.input_size=128",
                f"model.name={name}", *BASELINES[name][0]]
    assert main(with_settings(["forward", "--device", "cpu"], settings)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "probability map 400x300" in out
    assert f"model {name}: {BASELINES[name][1].__name__}" in out
