"""The ``unet`` baseline end to end through the CLI: train, resume, eval, predict, export, profile, forward.

Nothing but the config names the baseline: the same commands carry a model without a frozen
segmenter (no embedding cache, images decoded every step, one ONNX graph).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from helpers import TINY_CONFIG, read_pixels, write_blob_split

from odssam.checkpoint import load_checkpoint
from odssam.cli.main import main
from odssam.export.runtime import OnnxPredictor

# A CPU-sized U-Net: timm's test ResNet at 64 px, decoder channels 32 .. 2.
UNET = ["model.name=unet", "model.unet.encoder=test_resnet", "model.unet.input_size=64", "model.unet.decoder_width=32"]


def settings(*items: str) -> list[str]:
    return [argument for item in items for argument in ("--set", item)]


def test_train_resume_eval_predict_export_profile_unet(tmp_path, capsys):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    write_blob_split(data / "train", 4, rng)
    write_blob_split(data / "test", 2, rng)
    common = [*UNET, f"data.root={data}", f"train.output_dir={tmp_path / 'runs'}", f"train.cache_dir={tmp_path / 'cache'}"]
    train = ["train", "--config", str(TINY_CONFIG), "--device", "cpu", "--no-progress"]

    # One epoch with a validation image (evaluated from decoded images: there is no cache) ...
    assert main(train + settings(*common, "data.val_count=1", "train.epochs=1")) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "no frozen segmenter" in out and "embedding cache: not used" in out
    assert not (tmp_path / "cache").exists()  # nothing cached
    run = tmp_path / "runs" / "tiny"
    stored = load_checkpoint(run / "last.pt")
    assert stored["config"]["model"]["name"] == "unet" and stored["sam_fingerprint"] == "none"
    assert stored["step"] == 2 and any(key.startswith("encoder.model.") for key in stored["prompt_encoder"])
    # ... then resumed for a second.
    assert main(train + ["--resume"] + settings(*common, "data.val_count=1", "train.epochs=2")) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert (run / "best.pt").is_file() and (run / "report.md").is_file()
    capsys.readouterr()

    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--output", str(tmp_path / "eval"),
                 "--device", "cpu", "--no-progress"]) == 0, capsys.readouterr().err
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "dice@0.5" in report and "unet, no SAM" in report.splitlines()[0]

    assert main(["predict", "--checkpoint", str(run / "last.pt"), str(data / "test" / "images"),
                 "--output", str(tmp_path / "predict"), "--device", "cpu", "--no-progress"]) == 0
    maps = sorted((tmp_path / "predict" / "probabilities").iterdir())
    assert [p.stem for p in maps] == ["00", "01"]
    assert read_pixels(maps[0]).shape[:2] == (40, 56)  # back at the image's own size

    capsys.readouterr()
    exported = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(run / "last.pt"), "--output", str(exported)]) == 0
    assert "one graph" in capsys.readouterr().out
    assert sorted(p.name for p in exported.iterdir()) == ["model.onnx", "odssam_onnx.json"]
    metadata = json.loads((exported / "odssam_onnx.json").read_text())
    assert (metadata["encoder"], metadata["decoder"], metadata["embedding_parts"]) == (None, "model.onnx", [])
    assert metadata["parity"]["max_abs_diff_logits"] < 1e-4
    # The onnxruntime predictor (no PyTorch) gives the PyTorch predictor's maps.
    from odssam import load

    image = data / "test" / "images" / "00.png"
    onnx_map = OnnxPredictor(exported).predict(image).probability
    torch_map = load(run / "last.pt", device="cpu").predict(image).probability
    assert onnx_map.shape == (40, 56) and np.abs(onnx_map - torch_map).max() < 1e-4

    assert main(["profile", "--config", str(TINY_CONFIG), "--json", *settings(*UNET)]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["model"] == "unet" and profile["frozen"] == [] and profile["learnable"]["params"] > 0

    assert main(["forward", "--config", str(TINY_CONFIG), "--device", "cpu", *settings(*UNET)]) == 0
    out = capsys.readouterr().out
    assert "unet (no SAM) starts from: random initialisation" in out and "probability map 400x300" in out
