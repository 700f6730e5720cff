"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse

from odssam.config import ExperimentConfig, apply_overrides, from_dict, load_config, to_dict


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--config", required=required, help="experiment YAML file (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.sam.variant=vit_b (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment config named by ``--config`` (defaults if none) with ``--set`` applied."""
    if args.config:
        return load_config(args.config, args.overrides)
    return from_dict(ExperimentConfig, apply_overrides(to_dict(ExperimentConfig()), args.overrides))
