"""Images too elongated for the model's input: one clear error naming the image and the limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_rgb, save_image

from odssam.cli.main import main
from odssam.errors import OdsSamError
from odssam.inference.batch import stage_image
from odssam.models.transforms import PreprocessSpec, sam_preprocess


@pytest.mark.parametrize(
    "height, width, side", [(7, 4097, 256), (4097, 7, 256), (20, 20000, 256), (1, 2100, 1024)]
)
def test_sam_preprocess_names_the_image_and_the_limit(rng, height, width, side):
    images = [random_rgb(rng, 8, 8), random_rgb(rng, height, width)]
    limit = rf"up to {2 * side}:1"
    pattern = rf"image 1: image is {width}x{height} \(WxH, \d+:1\).*{side} px input leaves 0 px.*{limit}"
    with pytest.raises(OdsSamError, match=pattern):
        sam_preprocess(images, side)
    tensor = torch.from_numpy(images[1]).permute(2, 0, 1)[None]
    with pytest.raises(OdsSamError, match=limit):
        sam_preprocess(tensor, side)


def test_the_limit_is_two_input_sides(rng):
    spec = PreprocessSpec(256)
    assert spec.size_problem(1, 512) is None and sam_preprocess([random_rgb(rng, 1, 512)], spec)[1] == [(1, 256)]
    assert "513:1" in spec.size_problem(1, 513)
    assert PreprocessSpec(256, resize="stretch").size_problem(1, 100000) is None  # any shape stretches


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_staging_refuses_it_before_any_device_sees_it(rng, device):
    # For CUDA the resize runs on the device, for a whole batch: refused here, on the host, first.
    with pytest.raises(OdsSamError, match="leaves 0 px"):
        stage_image(random_rgb(rng, 1, 600), PreprocessSpec(256), torch.device(device))


def test_predict_skips_it_naming_the_file(tiny_checkpoint, tmp_path, rng, capsys):
    long = save_image(random_rgb(rng, 1, 600), tmp_path / "in" / "long.png")
    save_image(random_rgb(rng, 30, 40), tmp_path / "in" / "fine.png")
    args = ["predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"skipped: {long}: image is 600x1 (WxH, 600:1)" in err and "up to 512:1" in err
    assert (tmp_path / "out" / "masks" / "fine.png").is_file()
