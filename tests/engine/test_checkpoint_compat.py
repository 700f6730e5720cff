"""``last.pt`` files written before the checkpoint writer moved to ``odssam.checkpoint`` still load and resume.

A real ``last.pt`` of the tiny config is about 70 MB, too big to commit. So the payload is
built here literally, key by key, as the trainer built it in version-1 checkpoints (its
former ``checkpoint_payload`` closure), and ``fixtures/last_pt_v1_layout.json`` records the
layout (keys and value types) of a ``last.pt`` that trainer wrote in a 1-step tiny run: the
literal payload, and today's writer, must both match it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from odssam.checkpoint import checkpoint_payload, load_checkpoint, load_model_from_checkpoint
from odssam.config import ExperimentConfig, to_dict, with_overrides
from odssam.engine.trainer import train
from odssam.models.registry import build_model

LAYOUT_FILE = Path(__file__).parent / "fixtures" / "last_pt_v1_layout.json"


def checkpoint_layout(payload: dict) -> dict:
    """Keys and value types of a ``last.pt`` (the config's sections, not its fields, which evolve)."""

    def kind(value) -> str:
        if isinstance(value, torch.Tensor):
            return f"Tensor[{str(value.dtype).removeprefix('torch.')}]"
        return type(value).__name__

    def kinds(mapping: dict) -> dict:
        return {key: kinds(value) if isinstance(value, dict) else kind(value) for key, value in mapping.items()}

    optimizer_state = payload["optimizer"]["state"].values()
    return {
        "top": {key: kind(value) for key, value in payload.items()},
        "config": sorted(payload["config"]),
        "prompt_encoder": sorted({kind(value) for value in payload["prompt_encoder"].values()}),
        "optimizer": sorted(payload["optimizer"]),
        "optimizer_state": sorted({f"{key}: {kind(value)}" for state in optimizer_state for key, value in state.items()}),
        "rng": kinds(payload["rng"]),
    }


def version_1_last_pt(cfg: ExperimentConfig, model, optimizer, epoch: int, step: int) -> dict:
    """``last.pt`` built the way the version-1 trainer built it, literal keys and all.

    Written out rather than calling ``odssam.checkpoint.capture_rng_state``: a later change
    there must not change the old layout this test stands for.
    """
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "format": "odssam",
        "version": 1,
        "config": to_dict(cfg),
        "prompt_encoder": {k: v.detach().cpu() for k, v in model.prompt_encoder.state_dict().items()},
        "sam_fingerprint": model.frozen_fingerprint(),
        "epoch": epoch,
        "step": step,
        "best_metric": None,
        "optimizer": optimizer.state_dict(),
        "scheduler": None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": [],
            "numpy": {
                "bit_generator": str(np_state[0]),
                "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "python": {
                "version": int(py_version),
                "internal": torch.tensor(py_internal, dtype=torch.int64),
                "gauss_next": py_gauss,
            },
        },
    }


@pytest.fixture
def trained_once(tiny_config):
    """The tiny model and an Adam optimizer after one update of every trainable weight."""
    torch.manual_seed(tiny_config.train.seed)
    model = build_model(tiny_config.model, feature_encoder_weights=False)
    optimizer = torch.optim.Adam(model.parameter_groups(tiny_config.train.weight_decay), lr=tiny_config.train.lr)
    sum(parameter.square().sum() for parameter in model.trainable_parameters()).backward()
    optimizer.step()
    return model, optimizer


def test_the_literal_payload_and_todays_writer_have_the_recorded_layout(tiny_config, trained_once):
    model, optimizer = trained_once
    recorded = json.loads(LAYOUT_FILE.read_text())
    assert checkpoint_layout(version_1_last_pt(tiny_config, model, optimizer, epoch=1, step=1)) == recorded
    written = checkpoint_payload(
        tiny_config, model.trainable, model.frozen_fingerprint(), epoch=1, step=1, best_metric=None, optimizer=optimizer
    )
    assert checkpoint_layout(written) == recorded


def test_a_version_1_last_pt_loads_for_prediction_and_resumes(tiny_config, trained_once, capsys):
    model, optimizer = trained_once
    run_dir = Path(tiny_config.train.output_dir) / tiny_config.name
    run_dir.mkdir(parents=True)
    path = run_dir / "last.pt"
    torch.save(version_1_last_pt(tiny_config, model, optimizer, epoch=1, step=3), path)

    loaded, loaded_cfg = load_model_from_checkpoint(path)
    assert loaded_cfg == tiny_config
    for key, value in model.prompt_encoder.state_dict().items():
        assert torch.equal(loaded.prompt_encoder.state_dict()[key], value), key

    resumed = train(with_overrides(tiny_config, {"train.epochs": 2, "train.final_eval": False}), resume=True, progress=False)
    assert f"resuming {run_dir} after epoch 1 (step 3)" in capsys.readouterr().out
    assert (resumed.epochs, resumed.steps) == (2, 6)  # 6 training images, batch 2: 3 steps per epoch
    assert [record["epoch"] for record in resumed.history] == [2]
    last = load_checkpoint(path)
    steps_taken = {int(state["step"]) for state in last["optimizer"]["state"].values()}
    assert steps_taken == {1 + 3}  # Adam continued from the stored state, not from scratch
