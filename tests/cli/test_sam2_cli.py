"""SAM 2 end to end through the CLI: train, eval and predict with a SAM 2 variant, config only.

Nothing in the trainer, evaluator or predictor names SAM 2: this is the proof that the
frozen-segmenter seam carries a segmenter with a three-part embedding.
"""

from __future__ import annotations


import numpy as np
import torch
from helpers import TINY_CONFIG, read_pixels, write_blob_split

from odssam.cli.main import main
from odssam.checkpoint import load_checkpoint


def test_train_eval_predict_with_sam2(tmp_path, capsys):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    write_blob_split(data / "train", 4, rng)
    write_blob_split(data / "test", 2, rng)
    settings = [
        "model.sam.variant=sam2_hiera_micro", "model.sam.image_size=128", f"data.root={data}",
        f"train.output_dir={tmp_path / 'runs'}", f"train.cache_dir={tmp_path / 'cache'}", "train.epochs=2",
    ]
    arguments = ["train", "--config", str(TINY_CONFIG), "--device", "cpu", "--no-progress"]
    assert main(arguments + [item for setting in settings for item in ("--set", setting)]) == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "tiny"
    stored = load_checkpoint(run / "last.pt")
    assert stored["config"]["model"]["sam"]["variant"] == "sam2_hiera_micro"
    assert stored["step"] == 4  # 2 epochs of 2 batches of 2
    # The embedding cache holds every SAM 2 part of the 4 training images: the prompt grid
    # and the two high-resolution maps.
    shapes = [np.load(p, mmap_mode="r").shape for p in (tmp_path / "cache").rglob("embedding/*/*.npy")]
    assert sorted(set(shapes)) == [(32, 32, 32), (64, 16, 16), (256, 8, 8)] and len(shapes) == 12

    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--output", str(tmp_path / "eval"),
                 "--device", "cpu", "--no-progress"]) == 0, capsys.readouterr().err
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "dice@0.5" in report

    assert main(["predict", "--checkpoint", str(run / "last.pt"), str(data / "test" / "images"),
                 "--output", str(tmp_path / "predict"), "--device", "cpu", "--no-progress"]) == 0
    maps = sorted((tmp_path / "predict" / "probabilities").iterdir())
    assert [p.stem for p in maps] == ["00", "01"]
    assert read_pixels(maps[0]).shape[:2] == (40, 56)  # back at the image's own size
