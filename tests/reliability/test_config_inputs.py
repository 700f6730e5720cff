"""Config files and ``--set`` overrides as the fuzz generates them, straight through :func:`load_config`."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from helpers import TINY_CONFIG

import bad_inputs as bad
from odssam.config import ExperimentConfig, load_config
from odssam.errors import OdsSamError


def test_every_generated_config_file_loads_or_is_refused_in_one_line_naming_the_file(tmp_path):
    base = yaml.safe_load(TINY_CONFIG.read_text())
    kinds = set()
    for index in range(200):
        kind, text, _ = bad.mutated_config(base, np.random.default_rng(index))
        kinds.add(kind)
        path = tmp_path / f"c{index}.yaml"
        path.write_bytes(text.encode("latin-1", errors="replace") if kind == "malformed_flip" else text.encode())
        try:
            config = load_config(path)
        except OdsSamError as error:
            message = str(error)
            assert message.startswith(f"{path}: ") or message == f"config file not found: {path}", message
            assert "\n" not in message, message
        else:
            assert isinstance(config, ExperimentConfig) and kind in ("bad_value", "malformed_flip"), kind
    assert len(kinds) == 8  # every kind of damage was drawn


def test_every_generated_override_is_applied_or_refused_in_one_line():
    for index in range(200):
        kind, item, names = bad.bad_override(np.random.default_rng(index))
        try:
            load_config(TINY_CONFIG, [item])
        except OdsSamError as error:
            assert "\n" not in str(error) and names in str(error), (item, str(error))


@pytest.mark.parametrize("item", ["train..epochs=1", "=3", ".lr=0.1", "train.=1", " . =1"])
def test_a_dotted_key_with_an_empty_part_is_refused_by_name(item):
    key = item.split("=", 1)[0].strip()
    with pytest.raises(OdsSamError, match=rf"override '{item}': '{key}' is not a dotted key"):
        load_config(TINY_CONFIG, [item])


@pytest.mark.parametrize("key", ["model.sam.checkpoint", "model.prompt_encoder.feature_encoder.checkpoint"])
def test_an_empty_checkpoint_path_is_refused_at_load_naming_the_key(key):
    with pytest.raises(OdsSamError, match=rf"config key {key}: got ''; expected text not empty, or null"):
        load_config(TINY_CONFIG, [f'{key}=""'])
    assert load_config(TINY_CONFIG, [f"{key}=null"]) is not None  # null (random weights) stays valid


def test_a_missing_sam_checkpoint_names_the_config_key(tmp_path):
    from odssam.models.checkpoints import resolve_checkpoint

    for path in (tmp_path / "1e3", tmp_path):
        with pytest.raises(OdsSamError, match=rf"{path}.*\(config key model\.sam\.checkpoint, or --sam-checkpoint\)"):
            resolve_checkpoint("vit_micro", str(path))


@pytest.mark.parametrize("item", ["train.metrics=[]", "train.metrics=[dice, []]"])
def test_an_empty_metric_list_is_refused_at_load_naming_the_key(item):
    with pytest.raises(OdsSamError, match=r"config key train\.metrics: got .*; expected a (non-empty )?list"):
        load_config(TINY_CONFIG, [item])


def test_an_empty_metric_selection_says_what_to_choose():
    from odssam.metrics.evaluator import resolve_metrics

    with pytest.raises(OdsSamError, match=r"no metric selected in ' , '; choose from .*dice.*'default' or 'all'"):
        resolve_metrics(" , ")


def test_an_override_into_a_section_the_file_sets_to_a_scalar_names_the_file(tmp_path):
    path = tmp_path / "scalar_section.yaml"
    path.write_text("train: abc\n")
    with pytest.raises(OdsSamError, match=rf"^{path}: override 'train.epochs=1': 'train' is not a mapping$"):
        load_config(path, ["train.epochs=1"])
