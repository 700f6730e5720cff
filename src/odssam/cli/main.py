"""Entry point of the ``odssam`` command.

Each sub-command lives in its own module under :mod:`odssam.cli` and exposes
``add_parser(subparsers)``, which registers an ``argparse`` parser whose ``func``
default takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from odssam import __version__
from odssam.errors import OdsSamError

# Module names under odssam.cli, in the order they appear in ``odssam --help``.
COMMAND_MODULES = (
    "demo",
    "forward",
    "train",
    "eval",
    "predict",
    "export",
    "metrics",
    "data",
    "profile",
    "weights",
    "reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odssam",
        description="ODS-SAM: pixel-level anomaly segmentation with a frozen Segment Anything Model.",
    )
    parser.add_argument("--version", action="version", version=f"odssam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"odssam.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"odssam.cli.{name}":
                continue  # command not part of this build
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except OdsSamError as error:
        print(f"odssam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"odssam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
