"""Config values are type- and range-checked once, at load, with one-line errors naming the key."""

from __future__ import annotations

import dataclasses
import math
import re
import typing

import pytest

from odssam.cli.common import config_from_args
from odssam.cli.main import build_parser, main
from odssam.config import ExperimentConfig, ModelConfig, apply_overrides, from_dict, load_config, to_dict
from odssam.config_checks import RULE_KEY, Rule
from odssam.errors import OdsSamError
from tests.helpers import TINY_CONFIG


def leaf_fields(cls: type = ExperimentConfig, where: str = ""):
    """(dotted key, annotation, rule or None) of every non-section field."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from leaf_fields(kind, f"{where}{f.name}.")
        else:
            yield f"{where}{f.name}", kind, f.metadata.get(RULE_KEY)


def scalar_of(kind):
    """``(int, optional, is_list)`` for ``int``, ``int | None``, ``tuple[str, ...]`` (a list in YAML)."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        return typing.get_args(kind)[0], False, True
    if origin is not None:
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return inner, True, False
    return kind, False, False


WRONG_TYPE = {
    int: ["two", True, 2.5, [1]],
    float: ["oops", False, math.nan, math.inf, {"a": 1}],
    bool: ["maybe", 1, None],
    str: [5, 1.5, ["a"]],
}


def bad_values(kind, rule: Rule | None) -> list:
    """Values of ``kind``'s field that must be refused: wrong type, out of range, unknown choice."""
    scalar, optional, is_list = scalar_of(kind)
    values = [v for v in WRONG_TYPE[scalar] if not (optional and v is None)]
    if rule is not None:
        if rule.allowed_choices() is not None:
            values.append("no_such_choice" if scalar is str else 7)
        if rule.at_least is not None:
            values.append(rule.at_least - 1 if scalar is int else rule.at_least - 0.5)
        if rule.above is not None:
            values.append(rule.above)
        if rule.at_most is not None:
            values.append(rule.at_most + 1)
        if rule.multiple_of:
            values.append(rule.multiple_of * 3 + 1)
        if rule.odd:
            values.append(2)
        if rule.nonempty:
            values.append("")
    if is_list:
        return ["text, not a list"] + [[v] for v in values if not isinstance(v, list)]
    return values


CASES = [(key, value) for key, kind, rule in leaf_fields() for value in bad_values(kind, rule)]


def build(key: str, value) -> ExperimentConfig:
    data = to_dict(ExperimentConfig())
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return from_dict(ExperimentConfig, data)


def test_every_field_has_a_type_the_checks_know():
    for key, kind, _ in leaf_fields():
        assert scalar_of(kind)[0] in WRONG_TYPE, key
    assert len(CASES) > 150


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v!r}"[:60] for k, v in CASES])
def test_bad_value_is_refused_in_one_line_naming_the_key(key, value):
    with pytest.raises(OdsSamError) as caught:
        build(key, value)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"config key {key}: got ")
    assert "expected" in message


def test_defaults_and_every_config_file_pass():
    from_dict(ExperimentConfig, to_dict(ExperimentConfig()))
    from_dict(ModelConfig, to_dict(ModelConfig()), "model.")


def test_all_bad_keys_are_reported_at_once():
    data = apply_overrides({}, ["train.lr=oops", "train.epochs=0", "data.dataset=nope", "model.bogus=1"])
    with pytest.raises(OdsSamError) as caught:
        from_dict(ExperimentConfig, data)
    message = str(caught.value)
    for key in ("train.lr", "train.epochs", "data.dataset", "model.bogus"):
        assert key in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text, expected", [("1e-4", 1e-4), ("1E-3", 1e-3), (".5e-2", 0.005), ("1", 1.0), ("'0.25'", 0.25)]
)
def test_float_fields_take_numbers_yaml_reads_as_text(text, expected):
    cfg = load_config(TINY_CONFIG, [f"train.lr={text}"])
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == expected


def test_whole_floats_become_ints_and_null_clears_optional_fields():
    overrides = ["train.epochs=3.0", "train.max_steps=", "data.image_size=~", "train.channels_last=null"]
    cfg = load_config(TINY_CONFIG, overrides)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.max_steps is None and cfg.data.image_size is None and cfg.train.channels_last is None


def test_choices_come_from_the_registries():
    from odssam.data.registry import DATASET_REGISTRY
    from odssam.models.sam import SAM_REGISTRY

    assert load_config(TINY_CONFIG, ["model.sam.variant=vit_b"]).model.sam.variant == "vit_b"
    with pytest.raises(OdsSamError, match="model.sam.variant: got 'vit_q'; expected one of " + ", ".join(SAM_REGISTRY)):
        load_config(TINY_CONFIG, ["model.sam.variant=vit_q"])
    with pytest.raises(OdsSamError, match="expected one of " + ", ".join(DATASET_REGISTRY)):
        load_config(TINY_CONFIG, ["data.dataset=imagenet"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.prompt_encoder.use_ssm=true", None),
        ("model.prompt_encoder.ssm.num_layers=0", "ssm.num_layers: got 0; expected >= 1 when use_ssm is on"),
        ("model.prompt_encoder.odconv.num_layers=0", "odconv.num_layers: got 0; expected >= 1 when use_odconv"),
        ("model.prompt_encoder.ssm.dt_min=0.5", "ssm.dt_min: got 0.5; expected <= ssm.dt_max"),
        ("train.dice_weight=0", None),
    ],
)
def test_fields_that_contradict_each_other_are_refused(override, message):
    if message is None:
        load_config(TINY_CONFIG, [override])
        return
    with pytest.raises(OdsSamError, match=message):
        load_config(TINY_CONFIG, [override])


def test_contradicting_loss_and_deprecated_switch_and_both_weights_zero():
    assert load_config(TINY_CONFIG, ["train.full_resolution_loss=true"]).train.full_resolution_loss is True
    with pytest.raises(OdsSamError, match="train.full_resolution_loss"):
        load_config(TINY_CONFIG, ["train.full_resolution_loss=true", "train.loss_resolution=label"])
    with pytest.raises(OdsSamError, match="dice_weight / bce_weight: got 0 / 0"):
        load_config(TINY_CONFIG, ["train.dice_weight=0", "train.bce_weight=0"])
    with pytest.raises(OdsSamError, match="train.eval_every: got 0"):
        load_config(TINY_CONFIG, ["data.val_count=2", "train.eval_every=0"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("name=[a", "override 'name=[a': not valid YAML: expected ',' or ']'"),
        ("name={a: 1", "override 'name={a: 1': not valid YAML"),
        ("name=&a [*a]", "override 'name=&a [*a]': a YAML alias refers to a value that contains it"),
        ("train=&t {x: *t}", "recursive anchor"),
        ("name=*undefined", "found undefined alias"),
        ("name=" + "[" * 5000, "override 'name="),
    ],
)
def test_malformed_override_yaml_is_one_line_naming_the_override(override, message):
    with pytest.raises(OdsSamError, match=re.escape(message)) as caught:
        load_config(TINY_CONFIG, [override])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400 + len(override)


def test_shared_aliases_are_fine_and_large_values_are_shown_short():
    cfg = load_config(TINY_CONFIG, ["train.metrics=[&m dice, *m]"])
    assert cfg.train.metrics == ("dice", "dice")
    bomb = "train.metrics=[&a [x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a], [*b, *b, *b, *b]]"
    with pytest.raises(OdsSamError) as caught:
        load_config(TINY_CONFIG, [bomb])
    assert str(caught.value).count("config key train.metrics") == 1 and len(str(caught.value)) < 600


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a UTF-8 text file"),
        ("name: utf16\n".encode("utf-16"), "not a UTF-8 text file"),
        (b"name: [unclosed\n", "not valid YAML"),
        (b"a: &a [*a]\n", "recursive anchor"),
        (b"- just\n- a list\n", "the top level must be a mapping"),
        (b"train:\n  lr: 1e-4\n  epochs: two\n", "config key train.epochs: got 'two'"),
    ],
)
def test_bad_config_files_are_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(OdsSamError, match=message) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_stored_configs_of_older_checkpoints_still_load():
    from odssam.checkpoint import config_from_checkpoint, resumable_model_config

    old = to_dict(ExperimentConfig())
    del old["train"]["loss_resolution"], old["model"]["sam"]["fast_encoder"]  # written before those fields
    old["train"]["full_resolution_loss"] = True
    cfg = config_from_checkpoint({"config": old})
    assert cfg.train.full_resolution_loss is True and cfg.train.loss_resolution == "logits"
    assert resumable_model_config(old["model"])["sam"]["fast_encoder"] is True
    old["train"]["lr"] = "oops"
    with pytest.raises(OdsSamError, match="ckpt.pt: the stored config .*config key train.lr: got 'oops'"):
        config_from_checkpoint({"config": old}, "ckpt.pt")


def test_cli_refuses_a_bad_override_with_one_line_and_exit_code_2(capsys):
    assert main(["train", "--config", str(TINY_CONFIG), "--set", "train.lr=oops"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("odssam train: error: ") and "config key train.lr: got 'oops'; expected a number > 0" in err


def test_cli_reads_an_exponent_without_a_dot_as_a_float(capsys):
    args = build_parser().parse_args(["train", "--config", str(TINY_CONFIG), "--set", "train.lr=1e-4"])
    lr = config_from_args(args).train.lr
    assert isinstance(lr, float) and lr == 1e-4
    # With no data.root it gets as far as the training checks, past every config check.
    assert main(["train", "--config", str(TINY_CONFIG), "--set", "train.lr=1e-4"]) == 2
    assert "data.root is empty" in capsys.readouterr().err
