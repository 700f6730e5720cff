"""A built config is immutable; a changed copy comes from with_overrides, checked like a loaded config."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from odssam.config import ExperimentConfig, load_config, save_config, to_dict, with_overrides
from odssam.errors import OdsSamError
from tests.helpers import TINY_CONFIG


def test_a_loaded_config_cannot_be_changed():
    cfg = load_config(TINY_CONFIG)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train = dataclasses.replace(cfg.train, epochs=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.root = "/somewhere/else"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.prompt_encoder.ssm.scan_backend = "reference"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg.model.sam, "checkpoint", "sam.pth")
    # List fields are tuples: nothing can be appended to them either.
    assert isinstance(cfg.train.metrics, tuple) and isinstance(cfg.data.test_sets, tuple)
    assert isinstance(ExperimentConfig().train.metrics, tuple)


def test_with_overrides_returns_a_changed_copy_and_leaves_the_original():
    cfg = load_config(TINY_CONFIG)
    before = to_dict(cfg)
    derived = with_overrides(cfg, {"data.root": "/data/kvasir", "train.epochs": 3, "train.metrics": ("dice",)})
    assert (derived.data.root, derived.train.epochs, derived.train.metrics) == ("/data/kvasir", 3, ("dice",))
    assert to_dict(cfg) == before
    whole_section = with_overrides(cfg, {"model.sam": dataclasses.replace(cfg.model.sam, image_size=512)})
    assert whole_section.model.sam.image_size == 512 and whole_section.model.prompt_encoder == cfg.model.prompt_encoder
    assert with_overrides(cfg, {}) == cfg


def test_with_overrides_checks_the_copy_and_names_the_key():
    cfg = load_config(TINY_CONFIG)
    with pytest.raises(OdsSamError, match="config key train.epochs: got 0; expected an integer >= 1"):
        with_overrides(cfg, {"train.epochs": 0})
    with pytest.raises(OdsSamError, match=r"config key train.metrics: got \['dice', 'nope'\]; expected a list"):
        with_overrides(cfg, {"train.metrics": ("dice", "nope")})
    with pytest.raises(OdsSamError, match="config key train.eval_every: got 0; expected >= 1 when data.val_count > 0"):
        with_overrides(cfg, {"data.val_count": 2, "train.eval_every": 0})
    with pytest.raises(OdsSamError, match="unknown config key.*train.epoch;"):
        with_overrides(cfg, {"train.epoch": 3})
    with pytest.raises(OdsSamError, match="config key model.sam.image_size: got 100; expected"):
        with_overrides(cfg.model, {"sam.image_size": 100}, "model.")
    with pytest.raises(OdsSamError, match="config key name.first: 'name' is not a mapping"):
        with_overrides(cfg, {"name.first": "x"})


def test_yaml_output_keeps_lists(tmp_path):
    cfg = with_overrides(load_config(TINY_CONFIG), {"data.test_sets": ("Kvasir", "CVC-300")})
    save_config(cfg, tmp_path / "config.yaml")
    stored = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert stored["data"]["test_sets"] == ["Kvasir", "CVC-300"] and stored == to_dict(cfg)
    assert isinstance(stored["train"]["metrics"], list)
    assert load_config(tmp_path / "config.yaml") == cfg
