"""Entry point of the ``odssam`` command.

Each sub-command lives in its own module under :mod:`odssam.cli` and exposes
``add_parser(subparsers)``, which registers an ``argparse`` parser whose ``func``
default takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from odssam import __version__
from odssam.cli.common import HelpFormatter, examples
from odssam.errors import OdsSamError
from odssam.utils.atomic import is_write_error

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
    "compare",
)


# Every command follows this; README "Exit codes" says the same.
EXIT_CODES = """exit codes (every command):
  0    ok
  1    some inputs failed and were listed on stderr, the rest was processed
       (predict skipping unreadable images, metrics skipping pairs, eval and
       train's final evaluation skipping unreadable test images, data check
       finding problems, reproduce with failed runs)
  2    usage or input error: bad option or config, missing file, nothing at all
       could be processed, an output folder or file that cannot be written (full,
       read-only, no permission); the message names the file or option
  3    crash: an unexpected error (a bug in odssam); the traceback is printed on
       stderr, to be included in a bug report
  130  interrupted (Ctrl-C); train stops after the current epoch and saves
       last.pt first (a second Ctrl-C stops at once)
  143  train stopped by SIGTERM, after the current epoch, last.pt saved"""

EXIT_CRASH = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odssam",
        description="ODS-SAM: pixel-level anomaly segmentation with a frozen Segment Anything Model. "
        "'odssam COMMAND --help' describes a command, with examples.",
        epilog=examples(
            "odssam demo                                       # start here: the whole pipeline in minutes",
            "odssam train --config configs/kvasir.yaml --set data.root=/data/Kvasir-SEG",
            "odssam predict --checkpoint runs/kvasir/last.pt photos/ --output predictions",
        )
        + "\n\n"
        + EXIT_CODES,
        formatter_class=HelpFormatter,
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
    except KeyboardInterrupt as error:
        # A training run stopped by a signal says where (TrainingInterrupted); a bare Ctrl-C says nothing.
        print(f"odssam {args.command}: {error or 'interrupted'}", file=sys.stderr)
        return getattr(error, "exit_code", 130)
    except Exception as error:  # noqa: BLE001 - the last line of defence: a documented exit code
        if is_write_error(error):  # a full or read-only disk met outside odssam's atomic writes (TensorBoard, ONNX)
            print(f"odssam {args.command}: error: {error.filename or 'a file'}: {error.strerror}", file=sys.stderr)
            return 2
        traceback.print_exc()
        print(f"odssam {args.command}: crashed ({type(error).__name__}: {error}); this is a bug in odssam: "
              "please report it with the traceback above (exit code 3)", file=sys.stderr)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
