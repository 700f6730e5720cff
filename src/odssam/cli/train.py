"""``odssam train``: train ODS-SAM's prompt encoder and write a run folder.

Examples::

    odssam train --config configs/kvasir.yaml --set data.root=/data/Kvasir-SEG
    odssam train --config configs/mvtec_ad.yaml --set data.root=/data/mvtec --set data.category=bottle
    odssam train --config configs/kvasir.yaml --set data.root=/data/Kvasir-SEG --set train.epochs=5  # shorter
    odssam train --resume runs/kvasir                       # continue after an interruption
    torchrun --nproc_per_node 2 -m odssam train --config configs/kvasir.yaml ...   # 2 GPUs
"""

from __future__ import annotations

import os
from pathlib import Path

from odssam.cli.common import (
    absolute_data_root,
    add_command_parser,
    add_config_arguments,
    add_no_progress_argument,
    config_from_args,
    examples,
)
from odssam.errors import OdsSamError


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "train",
        help="train the prompt encoder on a dataset (writes checkpoints, logs and a report)",
        description="Train ODS-SAM's prompt encoder with SAM frozen. The run folder is "
        "<train.output_dir>/<train.run_name or name>. Several GPUs: launch with torchrun.\n\n"
        "A shorter run: --set train.epochs=N (the paper trains 200 epochs) or --set train.max_steps=N "
        "(stop after N optimizer steps in total). Any config value can be overridden with --set KEY=VALUE.\n\n"
        "Ctrl-C (or SIGTERM) stops after the current epoch with last.pt saved (exit 130, 143), to be "
        "continued with --resume; a second Ctrl-C stops at once. last.pt is otherwise written every "
        "train.checkpoint_interval_s seconds (default 60) and after the last epoch.",
        epilog=examples(
            "odssam train --config configs/kvasir.yaml --set data.root=/data/Kvasir-SEG",
            "odssam train --config configs/kvasir.yaml --set data.root=/data/Kvasir-SEG --set train.epochs=5",
            "odssam train --config configs/kvasir.yaml --set data.root=/data/Kvasir-SEG --set train.max_steps=50",
            "odssam train --config configs/mvtec_ad.yaml --set data.root=/data/mvtec --set data.category=bottle",
            "odssam train --resume runs/kvasir                 # continue after an interruption",
            "torchrun --nproc_per_node 2 -m odssam train --config configs/kvasir.yaml --set data.root=...  # 2 GPUs",
        ),
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="RUN",
        help="continue an interrupted run from its last.pt: a run folder or checkpoint "
        "(its stored config is used, --set still applies), or, with no value, the run "
        "folder named by --config; a run stopped before its first checkpoint starts again from epoch 0",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--run-dir", help="run folder (default: <train.output_dir>/<train.run_name or name>)")
    add_no_progress_argument(parser)
    parser.set_defaults(func=run)


def resolve_run(args):
    """The config and run folder of a train invocation, honouring ``--resume``."""
    from odssam.config import ExperimentConfig, apply_overrides, from_dict, load_config
    from odssam.checkpoint import load_checkpoint
    from odssam.engine.run_setup import RunFolder

    run_dir = Path(args.run_dir) if args.run_dir else None
    if args.resume:  # a run folder, or a checkpoint inside one
        target = Path(args.resume)
        run_dir = target.parent if target.suffix == ".pt" else target
        if not args.config:
            folder = RunFolder(run_dir)
            if not folder.last.exists() and folder.config.is_file():
                # Killed before its first checkpoint: the config it stored as it started.
                return load_config(folder.config, args.overrides), run_dir
            last = folder.last
            data = apply_overrides(load_checkpoint(last)["config"], args.overrides)
            try:
                return from_dict(ExperimentConfig, data), run_dir
            except OdsSamError as error:
                raise OdsSamError(f"{last}: {error}") from error
    if not args.config:
        raise OdsSamError("give --config FILE (see configs/), or --resume RUN to continue a run")
    return config_from_args(args), run_dir


def run(args) -> int:
    from odssam.engine.trainer import train

    cfg, run_dir = resolve_run(args)
    cfg = absolute_data_root(cfg)  # eval and predict of this run may start from another folder
    result = train(
        cfg, run_dir=run_dir, resume=args.resume is not None, device=args.device, progress=not args.no_progress
    )
    summary = f"done: {result.epochs} epochs, {result.steps} steps, final model {result.checkpoint}"
    if result.best_metric is not None:
        summary += f" (best val {cfg.train.monitor} {result.best_metric:.4f})"
    if result.test_skipped:
        summary += f"; {len(result.test_skipped)} test image(s) skipped as unreadable (listed above and in report.md)"
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary)
    return 1 if result.test_skipped else 0  # README "Exit codes": some inputs failed, the rest was processed
