"""The training loop on the tiny config and a generated folder dataset (CPU, fp32)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from odssam.checkpoint import load_checkpoint, save_checkpoint
from odssam.cli.main import main as odssam_main
from odssam.config import load_config, with_overrides
from odssam.data import base as data_base
from odssam.engine import final_eval, run_setup, training_parts
from odssam.engine.augment import DecodedTrainingSet, augment_pair
from odssam.engine.trainer import TrainingDiverged, train
from odssam.errors import OdsSamError
from odssam.models.loss import DiceBCELoss

from efficientvit_sam_layout import TINY, save_release_checkpoint
from helpers import TINY_CONFIG


@pytest.fixture(scope="module")
def cli_run(folder_dataset, tmp_path_factory):
    """A 3-epoch run started through ``odssam train``: (run folder, config overrides)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("cli_run")
    overrides = [f"data.root={folder_dataset}", f"train.output_dir={base / 'runs'}", "train.epochs=3"]
    args = ["train", "--config", str(TINY_CONFIG), "--no-progress"]
    for item in overrides:
        args += ["--set", item]
    assert odssam_main(args) == 0
    return base / "runs" / "tiny", args


def read_history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_the_run_folder_is_complete(cli_run):
    run_dir, _ = cli_run
    history = read_history(run_dir)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    losses = [r["train_loss"] for r in history]
    assert losses[-1] < losses[0]
    for name in ("config.yaml", "splits/split.json", "cache.json", "last.pt", "curves.png", "report.md"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").iterdir())
    assert load_config(run_dir / "config.yaml").train.epochs == 3
    last = load_checkpoint(run_dir / "last.pt")
    assert last["epoch"] == 3 and last["step"] == 9 and "optimizer" in last
    report = json.loads((run_dir / "report.json").read_text())
    assert "folder" in json.dumps(report)


def test_default_protocol_trains_on_every_training_image_and_keeps_the_last_epoch(cli_run):
    run_dir, _ = cli_run
    split = json.loads((run_dir / "splits" / "split.json").read_text())
    assert len(split["splits"]["train"]) == 6 and split["splits"]["val"] == []
    history = read_history(run_dir)
    assert all(r["val"] is None and r["monitor"] is None and not r["best"] for r in history)
    assert not (run_dir / "best.pt").exists()  # nothing was selected
    assert "val" not in json.loads((run_dir / "cache.json").read_text())
    assert "last.pt (epoch 3, last epoch) on the test split" in (run_dir / "report.md").read_text()


def test_validation_is_an_opt_in_that_selects_best_pt(tiny_config):
    result = train(with_overrides(tiny_config, {"data.val_count": 2, "train.epochs": 3}), progress=False)
    run_dir = result.run_dir
    split = json.loads((run_dir / "splits" / "split.json").read_text())
    assert len(split["splits"]["train"]) == 4 and len(split["splits"]["val"]) == 2
    history = result.history
    assert all(r["val"] is not None and "dice@0.5" in r["val"] for r in history)
    assert result.steps == 6 and result.checkpoint == run_dir / "best.pt"
    best = load_checkpoint(run_dir / "best.pt")
    assert "optimizer" not in best
    best_epoch = [r["epoch"] for r in history if r["best"]][-1]
    assert best["epoch"] == best_epoch and best["best_metric"] == result.best_metric
    assert best["best_metric"] == max(r["monitor"] for r in history)
    for key, value in result.model.prompt_encoder.state_dict().items():
        assert torch.equal(value.cpu(), best["prompt_encoder"][key]), key  # the final model is best.pt
    assert f"best.pt (epoch {best_epoch}, best val dice@0.5)" in (run_dir / "report.md").read_text()


def test_validation_needs_eval_every(tiny_config):
    with pytest.raises(OdsSamError, match="train.eval_every"):  # refused when the config is derived
        train(with_overrides(tiny_config, {"data.val_count": 2, "train.eval_every": 0}), progress=False)


@pytest.mark.parametrize(
    "val_count, augment", [(0, False), (2, False), (0, True)], ids=["cached", "cached_with_validation", "decoded"]
)
def test_no_test_image_is_opened_before_the_final_evaluation(tiny_config, monkeypatch, val_count, augment):
    """Every file opened or decoded under the test folder is recorded with the phase it was read in.

    The data check before the first step opens test files for their headers and file ends
    only; no test image is opened while training, and none is decoded before the final
    evaluation.
    """
    import builtins

    test_folder = str(Path(tiny_config.data.root) / "test")
    phase, opened, decoded = ["setup"], [], []
    real_open, real_test_splits = builtins.open, final_eval.test_splits
    real_check, real_read_image = run_setup.checked_splits, data_base.read_image

    def in_test_folder(file) -> bool:
        return isinstance(file, (str, Path)) and str(Path(file).resolve()).startswith(test_folder)

    def recording_open(file, *args, **kwargs):
        if in_test_folder(file):
            opened.append((phase[0], Path(file).name))
        return real_open(file, *args, **kwargs)

    def recording_read_image(path):
        if in_test_folder(path):
            decoded.append((phase[0], Path(path).name))
        return real_read_image(path)

    def data_check(*args, **kwargs):
        phase[0] = "data check"
        splits = real_check(*args, **kwargs)
        phase[0] = "training"
        return splits

    def final_evaluation_splits(*args, **kwargs):
        phase[0] = "final evaluation"
        yield from real_test_splits(*args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(data_base, "read_image", recording_read_image)
    monkeypatch.setattr(run_setup, "checked_splits", data_check)
    monkeypatch.setattr(final_eval, "test_splits", final_evaluation_splits)
    result = train(with_overrides(tiny_config, {"data.val_count": val_count, "train.augment": augment}), progress=False)
    assert result.test_results  # the test images were evaluated ...
    assert {"test00.png", "test01.png"} <= {name for _, name in opened}  # ... and the recorder saw them
    assert {"test00.png", "test01.png"} <= {name for _, name in decoded}
    assert {stage for stage, _ in opened} == {"data check", "final evaluation"}  # never while training
    assert {stage for stage, _ in decoded} == {"final evaluation"}  # decoded only then


def test_eval_command_writes_reports_maps_and_figures(cli_run, tmp_path):
    run_dir, _ = cli_run
    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(run_dir / "last.pt"), "--output", str(out),
            "--save-probabilities", "--figures", "2", "--no-progress"]
    assert odssam_main(args) == 0
    assert (out / "report.md").is_file() and (out / "folder-figure.png").is_file()
    maps = sorted((out / "folder" / "probabilities").glob("*.png"))
    assert [p.stem for p in maps] == ["test00", "test01"]
    scores = json.loads((out / "report.json").read_text())
    final = json.loads((run_dir / "report.json").read_text())
    assert scores == final  # the same checkpoint on the same test split


def test_an_existing_run_is_not_overwritten(cli_run, capsys):
    _, args = cli_run
    assert odssam_main(args) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))],
)
@pytest.mark.parametrize(
    "channels_last, val_count", [(False, 0), (True, 0), (False, 2)],
    ids=["default_layout", "channels_last", "with_validation"],
)
def test_resumed_run_matches_an_uninterrupted_one(tiny_config, channels_last, val_count, device, deterministic_cuda):
    base = {"train.channels_last": channels_last, "data.val_count": val_count, "train.final_eval": False}
    straight_cfg = with_overrides(tiny_config, {**base, "train.epochs": 2, "train.run_name": "straight"})
    straight = train(straight_cfg, device=device, progress=False)
    interrupted = {**base, "train.run_name": "interrupted"}
    first_half = train(with_overrides(tiny_config, {**interrupted, "train.epochs": 1}), device=device, progress=False)
    assert first_half.epochs == 1
    resumed_cfg = with_overrides(tiny_config, {**interrupted, "train.epochs": 2})
    resumed = train(resumed_cfg, resume=True, device=device, progress=False)
    assert resumed.epochs == 2 and resumed.steps == straight.steps
    # Bit for bit, on the GPU too (with deterministic kernels: otherwise two uninterrupted
    # CUDA runs differ as well, since atomics add in any order and Adam amplifies the rounding).
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    assert [r["monitor"] for r in resumed.history] == [r["monitor"] for r in straight.history]
    assert resumed.best_metric == straight.best_metric
    assert resumed.checkpoint.name == straight.checkpoint.name == ("best.pt" if val_count else "last.pt")
    if val_count:
        assert all(r["monitor"] is not None for r in resumed.history)
    assert straight.model.prompt_encoder.channels_last == channels_last
    straight_state = straight.model.prompt_encoder.state_dict()
    for key, value in resumed.model.prompt_encoder.state_dict().items():
        assert torch.equal(value, straight_state[key]), key


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, monkeypatch):
    class PoisonedAfterFirstEpoch(DiceBCELoss):
        calls = 0

        def forward(self, logits, target):
            PoisonedAfterFirstEpoch.calls += 1
            loss = super().forward(logits, target)
            return loss * float("nan") if PoisonedAfterFirstEpoch.calls > 3 else loss

    monkeypatch.setattr(training_parts, "DiceBCELoss", PoisonedAfterFirstEpoch)
    with pytest.raises(TrainingDiverged, match=r"loss became nan in epoch 2.*last\.pt \(epoch 1\)"):
        train(tiny_config, progress=False)
    last = load_checkpoint(tiny_config_run_dir(tiny_config) / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(value).all() for value in last["prompt_encoder"].values() if value.is_floating_point())


def tiny_config_run_dir(cfg):
    return Path(cfg.train.output_dir) / cfg.name


def test_augmented_training_runs_without_the_training_cache(tiny_config):
    changes = {"train.augment": True, "train.color_jitter": True, "train.max_steps": 1, "train.final_eval": False}
    result = train(with_overrides(tiny_config, changes), progress=False)
    assert result.steps == 1 and np.isfinite(result.history[0]["train_loss"])
    cache_report = json.loads((result.run_dir / "cache.json").read_text())
    assert "train" not in cache_report and "val" not in cache_report


def test_augmentation_is_seeded_per_epoch_and_item(folder_dataset):
    from odssam.data import build_dataset

    items = DecodedTrainingSet(build_dataset("folder", folder_dataset, "train"), 256, 64, augment=True, seed=5)
    items.set_epoch(1)
    first, again = items[0], items[0]
    assert torch.equal(first["x"], again["x"]) and first["x"].shape == (3, 256, 256)
    targets = set()
    for epoch in range(2, 8):
        items.set_epoch(epoch)
        targets.add(items[0]["target"].numpy().tobytes())
    assert len(targets) > 1  # other epochs draw other flips/rotations


def test_augment_pair_moves_image_and_mask_together(rng):
    image = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    mask = image[..., 0] > 127
    for seed in range(8):
        out_image, out_mask = augment_pair(image, mask, np.random.default_rng(seed))
        assert np.array_equal(out_image[..., 0] > 127, out_mask)


@pytest.mark.parametrize(
    "override, message",
    [("train.lr_schedule=linear", "lr_schedule"), ("train.monitor=meanDic", "train.monitor"),
     ("train.batch_size=0", "batch_size"), ("data.root=", "data.root")],
)
def test_bad_training_settings_are_rejected_early(tiny_config, override, message):
    from odssam.config import apply_overrides, from_dict, to_dict, ExperimentConfig

    with pytest.raises(OdsSamError, match=message):  # at load (config checks) or when training starts
        train(from_dict(ExperimentConfig, apply_overrides(to_dict(tiny_config), [override])), progress=False)


def test_cli_resume_trains_further_from_the_stored_config(cli_run):
    run_dir, _ = cli_run
    args = ["train", "--resume", str(run_dir), "--set", "train.epochs=4", "--set", "train.final_eval=false",
            "--no-progress"]
    assert odssam_main(args) == 0
    assert [r["epoch"] for r in read_history(run_dir)] == [1, 2, 3, 4]
    last = load_checkpoint(run_dir / "last.pt")
    assert (last["epoch"], last["step"]) == (4, 12)
    assert load_config(run_dir / "config.yaml").train.epochs == 4


def test_a_run_started_from_pretrained_weights_resumes_without_their_file(tiny_config, tmp_path, capsys):
    weights = tmp_path / "efficientvit_sam_tiny.pt"
    save_release_checkpoint(weights, TINY)
    feature_encoder = "model.prompt_encoder.feature_encoder"
    cfg = with_overrides(
        tiny_config,
        {
            f"{feature_encoder}.upsample_mode": "bicubic",
            f"{feature_encoder}.norm_eps": 1e-6,
            f"{feature_encoder}.checkpoint": str(weights),
            "train.epochs": 1,
            "train.final_eval": False,
        },
    )
    train(cfg, progress=False)
    assert f"feature encoder starts from: EfficientViT-SAM image encoder (backbone and neck) from {weights}" in (
        capsys.readouterr().out
    )
    weights.unlink()  # a resumed run takes every weight from last.pt
    resumed = train(with_overrides(cfg, {"train.epochs": 2}), resume=True, progress=False)
    assert resumed.epochs == 2
    assert "feature encoder starts from: last.pt (resumed)" in capsys.readouterr().out


def test_a_checkpoint_written_before_the_feature_encoder_fields_resumes(tiny_config):
    cfg = with_overrides(tiny_config, {"train.epochs": 1, "train.final_eval": False})
    train(cfg, progress=False)
    last_path = Path(cfg.train.output_dir) / "tiny" / "last.pt"
    last = load_checkpoint(last_path)
    for field in ("checkpoint", "norm_eps"):
        del last["config"]["model"]["prompt_encoder"]["feature_encoder"][field]
    save_checkpoint(last_path, last)
    assert train(with_overrides(cfg, {"train.epochs": 2}), resume=True, progress=False).epochs == 2
    # A real model change is still refused.
    changed = with_overrides(cfg, {"model.prompt_encoder.feature_encoder.neck_blocks": 2, "train.epochs": 3})
    with pytest.raises(OdsSamError, match="model config differs"):
        train(changed, resume=True, progress=False)
