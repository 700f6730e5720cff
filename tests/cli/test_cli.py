"""The command-line entry point."""

import argparse
import dataclasses
import json
import re
import shlex

import pytest
from helpers import TINY_CONFIG, free_port

from odssam.cli.main import build_parser, main
from odssam.config import TrainConfig
from odssam.errors import OdsSamError
from odssam.models.checkpoints import download_checkpoint


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "profile" in out and "forward" in out


def test_profile_json(capsys):
    assert main(["profile", "--json", "--set", "model.sam.variant=vit_b"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sam_variant"] == "vit_b"
    assert report["learnable"]["params"] > 50e6


def test_bad_config_key_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  sam:\n    varient: vit_b\n")
    assert main(["profile", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "varient" in err and str(config) in err


def test_forward_on_a_generated_image(capsys):
    args = [
        "forward",
        "--device", "cpu",
        "--set", "model.sam.variant=vit_micro",
        "--set", "model.sam.image_size=256",
        "--set", "model.prompt_encoder.input_size=128",
        "--set", "model.prompt_encoder.feature_encoder.backbone=efficientvit_tiny",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "probability map 400x300" in out and "random weights" in out


# --------------------------------------------------------------------------- one tool: help, flags, exit codes


def _command_parsers():
    """``{"predict": parser, "data check": parser, ...}``: every command and sub-action of ``odssam``."""
    found = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[f"{prefix} {name}".strip()] = sub
                    walk(sub, f"{prefix} {name}")

    walk(build_parser(), "")
    return found


def _example_lines(help_text: str) -> list[str]:
    """The command lines of the ``examples:`` section, continuation lines joined, comments dropped."""
    block = help_text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        lines.append(line.split("  #")[0].strip())
    return lines


def test_every_command_shows_examples_that_parse():
    parser = build_parser()
    for name, sub in _command_parsers().items():
        examples = [line for line in _example_lines(sub.format_help()) if line.startswith("odssam ")]
        assert examples, name
        for line in examples:
            argv = shlex.split(line)[1:]
            assert " ".join(argv).startswith(name), (name, line)
            parser.parse_args(argv)  # SystemExit (a usage error) fails the test


HIDDEN_ALIASES = [
    # (command line without the flag, canonical, old spelling, value or None for a switch, namespace field)
    (["metrics"], "--output", "--out", "reports", "output"),
    (["data", "convert", "--dataset", "kvasir", "--root", "r"], "--output", "--out", "masks", "output"),
    (["eval", "--checkpoint", "c.pt"], "--output", "--out", "e", "output"),
    (["demo"], "--output", "--out", "d", "output"),
    (["reproduce", "table7"], "--output", "--out", "r", "output"),
    (["export", "--checkpoint", "c.pt"], "--output", "--out", "x", "output"),
    (["predict", "--checkpoint", "c.pt", "a.png"], "--output", "--out", "p", "output"),
    (["predict", "--checkpoint", "c.pt", "a.png", "--output", "p"], "--num-workers", "--workers", "3", "num_workers"),
    (["weights", "download", "vit_b"], "--no-progress", "--quiet", None, "no_progress"),
]


@pytest.mark.parametrize("base, canonical, alias, value, field", HIDDEN_ALIASES)
def test_old_spellings_still_work_but_help_shows_the_canonical_name(base, canonical, alias, value, field):
    parser = build_parser()
    given = [value] if value is not None else []
    by_canonical = parser.parse_args([*base, canonical, *given])
    by_alias = parser.parse_args([*base, alias, *given])
    expected = True if value is None else (int(value) if field == "num_workers" else value)
    assert str(getattr(by_canonical, field)) == str(getattr(by_alias, field)) == str(expected)
    sub = _command_parsers()[" ".join(base[:2]) if base[0] in ("data", "weights") else base[0]]
    options = re.findall(r"(?<![\w-])--[\w-]+", sub.format_help())
    assert canonical in options and alias not in options


def test_each_concept_has_one_name_in_every_help():
    for name, sub in _command_parsers().items():
        options = set(re.findall(r"(?<![\w-])--[\w-]+", sub.format_help()))
        assert not options & {"--out", "--workers"}, name
        if "--quiet" in options:  # a different concept: no progress bar and no notes; only metrics has it
            assert name == "metrics" and "--no-progress" in options


def test_a_required_output_is_satisfied_by_the_old_spelling_and_missing_output_is_a_usage_error(capsys):
    parser = build_parser()
    assert parser.parse_args(["export", "--checkpoint", "c.pt", "--out", "x"]).output == "x"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["export", "--checkpoint", "c.pt"])
    assert exit_info.value.code == 2 and "--output" in capsys.readouterr().err


def test_odssam_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert re.search(r"^  0 +ok", out, re.M) and re.search(r"^  1 +some inputs failed", out, re.M)
    assert re.search(r"^  2 +usage or input error", out, re.M)
    assert main([]) == 2  # no command: a usage error


def test_train_help_says_how_to_shorten_a_run_with_existing_keys():
    help_text = " ".join(_command_parsers()["train"].format_help().split())
    keys = re.findall(r"--set train\.(\w+)=N", help_text)
    assert {"epochs", "max_steps"} <= set(keys)
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    assert set(keys) <= fields


def test_the_sam_download_hint_names_flags_that_exist(tmp_path):
    with pytest.raises(OdsSamError) as error:
        download_checkpoint(f"http://127.0.0.1:{free_port()}/x.pth", tmp_path, progress=False)
    message = str(error.value)
    commands = re.search(r"--sam-checkpoint PATH \(([^)]*)\)", message).group(1).split(", ")
    parsers = _command_parsers()
    assert len(commands) >= 4
    for command in commands:
        assert "--sam-checkpoint" in parsers[command].format_help(), command
    assert "--set model.sam.checkpoint=PATH" in message


def test_train_stores_an_absolute_data_root(tmp_path, monkeypatch):
    import odssam.engine.trainer as trainer

    stored = {}

    def fake_train(cfg, **kwargs):  # record what the CLI passes on, then stop before any training
        stored["root"] = cfg.data.root
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(TINY_CONFIG), "--set", "data.root=data/set", "--no-progress"]) == 130
    assert stored["root"] == str(tmp_path.resolve() / "data" / "set")
