"""Checkpoint files: atomic writes, weights_only loading, clear errors, RNG state, model rebuild."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from helpers import checkpoint_payload, tiny_model_config

from odssam.config import ExperimentConfig, with_overrides
from odssam.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_from_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from odssam.errors import OdsSamError


def payload_of(model, cfg: ExperimentConfig | None = None, **extra) -> dict:
    """A checkpoint of a run stopped after epoch 3 (step 30, best metric 0.5)."""
    return checkpoint_payload(model, cfg or ExperimentConfig(), **{"epoch": 3, "step": 30, "best_metric": 0.5, **extra})


def tiny_experiment() -> ExperimentConfig:
    return ExperimentConfig(name="tiny", model=tiny_model_config())


def test_round_trip_is_weights_only_and_leaves_no_temp_files(tiny_model, tmp_path):
    layer = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3, weight_decay=1e-5)
    layer(torch.ones(3, 4)).sum().backward()
    optimizer.step()  # Adam now holds per-parameter state tensors and a step count
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    payload = payload_of(
        tiny_model, tiny_experiment(),
        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=capture_rng_state(),
    )
    path = save_checkpoint(tmp_path / "run" / "last.pt", payload)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code needed
    assert raw["epoch"] == 3 and raw["optimizer"]["param_groups"][0]["lr"] == 1e-3
    restored = torch.optim.Adam(layer.parameters(), lr=1.0)
    restored.load_state_dict(raw["optimizer"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    loaded = load_checkpoint(path)
    for key, value in tiny_model.prompt_encoder.state_dict().items():
        assert torch.equal(loaded["prompt_encoder"][key], value)


def test_truncated_file_is_reported(tiny_model, tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", payload_of(tiny_model))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OdsSamError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_other_files_are_refused_with_a_reason(tmp_path):
    missing = tmp_path / "nothing.pt"
    with pytest.raises(OdsSamError, match="not found"):
        load_checkpoint(missing)
    sam_like = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1)}, sam_like)
    with pytest.raises(OdsSamError, match="SAM checkpoint"):
        load_checkpoint(sam_like)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(OdsSamError, match="notes.pt"):
        load_checkpoint(text)


class NotAllowed:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "odssam", "thing": NotAllowed()}, path)
    with pytest.raises(OdsSamError, match="refused"):
        load_checkpoint(path)


def test_future_version_is_refused(tiny_model, tmp_path):
    path = save_checkpoint(tmp_path / "x.pt", payload_of(tiny_model, version=99))
    with pytest.raises(OdsSamError, match="version 99"):
        load_checkpoint(path)


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's legacy state
    state = capture_rng_state()
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": state, "format": "odssam"})
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.standard_normal())
    restore_rng_state(torch.load(path, weights_only=True)["rng"])
    second = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.standard_normal())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2] and first[3] == second[3]


def test_model_is_rebuilt_from_checkpoint(tiny_model, tmp_path):
    cfg = tiny_experiment()
    tiny_model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for parameter in tiny_model.trainable_parameters()[:3]:
            parameter.add_(0.25)  # weights a fresh build would not have
    path = save_checkpoint(tmp_path / "best.pt", payload_of(tiny_model, cfg))
    model, loaded_cfg = load_model_from_checkpoint(path, "cpu")
    assert loaded_cfg == cfg
    assert not model.training
    for key, value in tiny_model.prompt_encoder.state_dict().items():
        assert torch.equal(model.prompt_encoder.state_dict()[key], value)
    assert model.frozen_fingerprint() == tiny_model.frozen_fingerprint()


def test_other_sam_weights_are_detected(tiny_model, tmp_path):
    cfg = with_overrides(tiny_experiment(), {"model.sam.init_seed": 7})  # the stored fingerprint is of init_seed 0
    path = save_checkpoint(tmp_path / "best.pt", payload_of(tiny_model, cfg))
    with pytest.raises(OdsSamError, match="differ from those this prompt encoder was trained with"):
        load_model_from_checkpoint(path)
