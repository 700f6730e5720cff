"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from odssam.config import ExperimentConfig, apply_overrides, from_dict, load_config, to_dict, with_overrides


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


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but paragraphs with indented lines (examples, tables) are kept as written.

    Prose paragraphs of descriptions and epilogs are still wrapped to the terminal; an
    ``examples:`` block, whose command lines are indented, keeps its line breaks.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
        filled = []
        for paragraph in paragraphs:
            lines = paragraph.splitlines()
            if any(line[:1].isspace() for line in lines[1:]):
                filled.append("\n".join(indent + line for line in lines))
            else:
                filled.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(filled)


def examples(*command_lines: str) -> str:
    """An ``examples:`` epilog: one runnable command line per argument (``# comment`` allowed)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in command_lines)


def add_command_parser(subparsers, name: str, *, help: str, description: str | None = None,
                       epilog: str | None = None) -> argparse.ArgumentParser:
    """A sub-command's parser with the shared help layout (description wrapped, examples kept)."""
    return subparsers.add_parser(
        name, help=help, description=description or help, epilog=epilog, formatter_class=HelpFormatter
    )


def add_aliased_argument(parser, name: str, *aliases: str, **kwargs) -> argparse.Action:
    """``parser.add_argument(name, **kwargs)`` plus old spellings that do the same, hidden from ``--help``.

    The aliases keep existing scripts working while ``--help`` shows one name per concept
    (README: "One name per option"). A required option and its aliases form a required group, so
    either spelling satisfies it (and giving both is an error).
    """
    required = kwargs.pop("required", False)
    target = parser.add_mutually_exclusive_group(required=True) if required else parser
    action = target.add_argument(name, **kwargs)
    shared = {key: kwargs[key] for key in ("action", "type", "nargs", "metavar", "choices", "const") if key in kwargs}
    for alias in aliases:
        target.add_argument(alias, dest=action.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **shared)
    return action


def add_output_argument(parser, help: str, **kwargs) -> argparse.Action:
    """``--output DIR`` (hidden alias ``--out``): the folder a command writes to."""
    return add_aliased_argument(parser, "--output", "--out", metavar="DIR", help=help, **kwargs)


def add_no_progress_argument(parser, help: str = "no progress bars or progress lines (log files, CI)", aliases: tuple = ()) -> None:
    """``--no-progress``: no progress bars; everything else is still printed (``--quiet`` also drops that)."""
    add_aliased_argument(parser, "--no-progress", *aliases, action="store_true", help=help)


def add_num_workers_argument(parser, help: str) -> None:
    """``--num-workers N`` (hidden alias ``--workers``): parallel image loading."""
    add_aliased_argument(parser, "--num-workers", "--workers", type=int, default=None, metavar="N", help=help)


def absolute_data_root(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with ``data.root`` made absolute (a copy), before a run stores its config.

    Every checkpoint holds the config; ``odssam eval`` of a run started in another folder
    reads ``data.root`` from it, which a relative path would resolve against the wrong
    folder. (``model.sam.checkpoint`` is left as given: resuming compares the model config
    with the stored one, and ``--sam-checkpoint`` overrides it where it does not resolve.)
    """
    if not cfg.data.root:
        return cfg
    return with_overrides(cfg, {"data.root": str(Path(cfg.data.root).expanduser().resolve())})
