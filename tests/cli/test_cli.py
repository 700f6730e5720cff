"""The command-line entry point."""

import json

import pytest

from odssam.cli.main import main


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
