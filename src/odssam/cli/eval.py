"""``odssam eval``: score a trained checkpoint on a dataset and write paper-style reports.

Examples::

    odssam eval --checkpoint runs/kvasir/last.pt                      # the run's own test split(s)
    odssam eval --checkpoint runs/polyp/last.pt --dataset pranet --root /data/PraNet \\
        --category CVC-ColonDB --save-probabilities --figures 8

A sample that cannot be read is skipped and listed (stderr, ``report.md`` and
``report-skipped.json``); the others are scored and the report is written; the exit code
is then 1. ``--skip-missing`` does the same for entries of the run's stored split that the
dataset folder no longer holds (without it they refuse the split, exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

from odssam.cli.common import (
    add_command_parser,
    add_no_progress_argument,
    add_num_workers_argument,
    add_output_argument,
    examples,
)
from odssam.errors import OdsSamError


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "eval",
        help="evaluate a trained checkpoint on a dataset (paper-style tables)",
        description="Evaluate a run's checkpoint (last.pt: the last epoch; best.pt: the epoch chosen "
        "on validation images, written only when data.val_count > 0). Without --dataset/--root the "
        "data section stored in the checkpoint is used (its test split, or each of data.test_sets). "
        "Unreadable samples are skipped and listed in report.md; the exit code is then 1.",
        epilog=examples(
            "odssam eval --checkpoint runs/kvasir/last.pt                # the run's own test split(s)",
            "odssam eval --checkpoint odssam-demo/run/last.pt --figures 4 --output demo-eval",
            "odssam eval --checkpoint runs/polyp/last.pt --dataset pranet --root /data/PraNet "
            "--category CVC-ColonDB --save-probabilities",
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="last.pt (or best.pt) of a run")
    parser.add_argument("--dataset", help="dataset name (default: the one the run trained on)")
    parser.add_argument("--root", help="dataset folder (default: the run's data.root)")
    parser.add_argument("--split", default="test", help="train, val or test (default: test)")
    parser.add_argument(
        "--category", action="append", default=None,
        help="MVTec AD category or PraNet test set (repeatable; default: the run's)",
    )
    parser.add_argument(
        "--skip-missing", action="store_true",
        help="score the run's stored split even if the folder lacks some of its entries (listed as skipped)",
    )
    parser.add_argument("--image-size", type=int, default=None, help="resize images to this square size first")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names, 'default' or 'all'")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    add_num_workers_argument(parser, "data loader worker processes (default: the run's data.num_workers)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--sam-checkpoint", help="SAM weights to use instead of the path stored in the run")
    add_output_argument(parser, "report folder (default: <checkpoint folder>/eval-<split>)")
    parser.add_argument("--save-probabilities", action="store_true", help="write 8-bit probability PNGs")
    parser.add_argument("--figures", type=int, default=0, metavar="N", help="figure grid of the first N samples")
    add_no_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from odssam.config import with_overrides
    from odssam.checkpoint import load_model_from_checkpoint
    from odssam.engine.distributed import process_device
    from odssam.engine.evaluate import SkippedSample, evaluate_dataset, write_skipped
    from odssam.engine.setup import build_split
    from odssam.metrics.report import format_table, write_report
    from odssam.utils.atomic import check_writable_folder
    from odssam.utils.device import resolve_precision

    if args.batch_size < 1:
        raise OdsSamError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = process_device(args.device)
    model, cfg = load_model_from_checkpoint(args.checkpoint, device, sam_checkpoint=args.sam_checkpoint)
    changes = {}
    if args.dataset and args.dataset != cfg.data.dataset:
        changes.update({"data.dataset": args.dataset, "data.category": None, "data.test_sets": ()})
    if args.root:
        changes["data.root"] = args.root
    if args.image_size is not None:
        changes["data.image_size"] = args.image_size
    cfg = with_overrides(cfg, changes)
    dcfg = cfg.data
    if not dcfg.root:
        raise OdsSamError(f"{args.checkpoint}: the run stores no data.root; pass --root")
    if not args.root and not Path(dcfg.root).expanduser().exists():
        where = "" if Path(dcfg.root).is_absolute() else f" (a relative path, read from {Path.cwd()})"
        raise OdsSamError(f"{args.checkpoint}: the run's data.root {dcfg.root} does not exist{where}; pass --root")
    if args.category:
        categories = list(args.category)
    elif args.split == "test" and dcfg.test_sets:
        categories = list(dcfg.test_sets)
    else:
        categories = [dcfg.category]
    metrics = args.metrics or cfg.train.metrics
    num_workers = dcfg.num_workers if args.num_workers is None else args.num_workers
    out_dir = Path(args.output) if args.output else Path(args.checkpoint).parent / f"eval-{args.split}"
    check_writable_folder(out_dir)
    amp_dtype = resolve_precision(cfg.train.precision, device)

    # The run's recorded partition (e.g. MVTec AD's seeded split) when scoring its own data.
    recorded = Path(args.checkpoint).parent / "splits" / "split.json"
    same_data = not (args.dataset or args.root or args.category or args.image_size) and recorded.is_file()
    results, skipped = [], []
    for category in categories:
        split_file = recorded if same_data and category == cfg.data.category else None
        dataset = build_split(dcfg, args.split, split_file, category=category, skip_missing=args.skip_missing)
        skipped += [SkippedSample(*missing) for missing in dataset.unavailable]
        name = category or dcfg.dataset
        result, kept = evaluate_dataset(
            model, dataset, name=name, metrics=metrics, batch_size=args.batch_size, num_workers=num_workers,
            amp_dtype=amp_dtype, progress=not args.no_progress,
            prediction_dir=out_dir / name / "probabilities" if args.save_probabilities else None,
            keep_samples=max(args.figures, 0), skipped=skipped,
        )
        results.append(result)
        if kept:
            _write_figure(kept, out_dir / f"{name}-figure.png")
    weights = cfg.model.sam.checkpoint or "random SAM weights: scores are not meaningful"
    frozen = f"SAM {cfg.model.sam.variant}: {weights}" if model.segmenter is not None else f"{cfg.model.name}, no SAM"
    title = f"{cfg.name} ({Path(args.checkpoint).name}, {frozen}) on {args.split}"
    paths = write_report(results, out_dir, "report", title=title)
    write_skipped(skipped, out_dir)
    print(format_table(results))
    print(f"report: {paths['md']}")
    for sample in skipped:
        print(sample, file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} sample(s) could not be read and were skipped (listed in {paths['md']})", file=sys.stderr)
    return 1 if skipped else 0


def _write_figure(kept: list[tuple], path: Path) -> None:
    """Figure grid (image, ground truth, prediction, overlay), one row per sample."""
    from odssam.metrics.figures import save_figure_grid

    images, masks, probabilities, names = zip(*kept)
    save_figure_grid(path, list(images), list(masks), {"ODS-SAM": list(probabilities)}, row_labels=list(names))
