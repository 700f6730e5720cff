"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse

from odssam.config import ExperimentConfig, apply_overrides, from_dict, load_config, to_dict


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--config", required=required, help="experiment YAML file (see configs/)")
    add_set_argument(parser, "override a config value, e.g. --set model.sam.variant=vit_b (repeatable)")


def add_set_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment config named by ``--config`` (defaults if none) with ``--set`` applied."""
    if args.config:
        return load_config(args.config, args.overrides)
    return from_dict(ExperimentConfig, apply_overrides(to_dict(ExperimentConfig()), args.overrides))
