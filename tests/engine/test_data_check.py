"""``train`` checks every split it will read before its first step and lists every problem at once."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from odssam.cli.main import main as odssam_main
from odssam.config import with_overrides
from odssam.engine.trainer import train
from odssam.errors import OdsSamError

from helpers import TINY_CONFIG, random_rgb, save_image


@pytest.fixture
def damaged_copy(folder_dataset, tmp_path):
    """A copy of the folder dataset with four problems: two in train, two in test.

    Returns:
        ``(root, {problem: path})``.
    """
    root = shutil.copytree(folder_dataset, tmp_path / "damaged")
    truncated_mask = root / "train" / "masks" / "train01.png"
    truncated_mask.write_bytes(truncated_mask.read_bytes()[:60])
    lost_mask = root / "train" / "masks" / "train02.png"
    lost_mask.unlink()
    truncated_image = root / "test" / "images" / "test00.png"
    truncated_image.write_bytes(truncated_image.read_bytes()[:100])
    elongated = save_image(random_rgb(np.random.default_rng(0), 1, 1000), root / "test" / "images" / "test01.png")
    save_image(np.ones((1, 1000), dtype=bool), root / "test" / "masks" / "test01.png")
    problems = {"truncated mask": truncated_mask, "lost mask": root / "train" / "images" / "train02.png",
                "truncated image": truncated_image, "elongated": elongated}
    return root, problems


def test_every_problem_of_every_split_in_one_error_before_anything_is_written(tiny_config, damaged_copy, tmp_path):
    root, problems = damaged_copy
    cfg = with_overrides(tiny_config, {"data.root": str(root)})
    with pytest.raises(OdsSamError) as raised:
        train(cfg, progress=False)
    message = str(raised.value)
    assert message.startswith("the data of this run has 4 problem(s); nothing was trained")
    for problem, path in problems.items():
        assert str(path) in message, problem
    assert "train: " in message and "test: " in message
    assert "no mask for this image" in message and "leaves 0 px" in message and "up to 512:1" in message
    assert f"odssam data check --dataset folder --root {root}" in message
    written = [path for folder in ("runs", "cache") for path in (tmp_path / folder).rglob("*") if path.is_file()]
    assert written == []  # no config, split record, cache or checkpoint


def test_the_cli_exits_2_with_the_list(tiny_config, damaged_copy, capsys):
    root, problems = damaged_copy
    args = ["train", "--config", str(TINY_CONFIG), "--set", f"data.root={root}",
            "--set", f"train.output_dir={root.parent / 'cli-runs'}", "--set", f"train.cache_dir={root.parent / 'c'}"]
    assert odssam_main(args) == 2
    err = capsys.readouterr().err
    assert "odssam train: error: the data of this run has 4 problem(s)" in err
    assert all(str(path) in err for path in problems.values())


def test_test_split_is_checked_only_for_the_final_evaluation(tiny_config, damaged_copy, tmp_path):
    root, problems = damaged_copy
    shutil.copytree(f"{tiny_config.data.root}/train", root / "train", dirs_exist_ok=True)  # train whole again
    cfg = with_overrides(tiny_config, {"data.root": str(root), "train.max_steps": 1})
    with pytest.raises(OdsSamError, match="has 2 problem"):
        train(cfg, progress=False)
    result = train(with_overrides(cfg, {"train.final_eval": False}), progress=False)
    assert result.steps == 1 and result.test_results == []


def test_images_resized_to_squares_may_have_any_aspect(tiny_config, damaged_copy):
    root, _ = damaged_copy
    shutil.copytree(tiny_config.data.root, root, dirs_exist_ok=True)  # everything whole again ...
    elongated = save_image(random_rgb(np.random.default_rng(1), 1, 1000), root / "test" / "images" / "test01.png")
    save_image(np.ones((1, 1000), dtype=bool), root / "test" / "masks" / "test01.png")  # ... but one
    cfg = with_overrides(tiny_config, {"data.root": str(root), "train.max_steps": 1})
    with pytest.raises(OdsSamError, match=f"has 1 problem.*\n  test: {elongated}: image is 1000x1"):
        train(cfg, progress=False)
    result = train(with_overrides(cfg, {"data.image_size": 64}), progress=False)
    assert [r.n_images for r in result.test_results] == [2]
