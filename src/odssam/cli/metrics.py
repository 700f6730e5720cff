"""``odssam metrics``: score a folder of predictions against ground truth, or combine reports.

Examples::

    odssam metrics --pred runs/kvasir/pred --gt data/Kvasir-SEG/masks --dataset Kvasir
    odssam metrics --pred pred/bottle --gt MVTec-AD/bottle/ground_truth --recursive \\
        --gt-suffix _mask --missing-gt-empty --metrics default,auroc,aupro --output reports/
    odssam metrics --combine reports/bottle.json reports/cable.json --layout columns
    odssam metrics --pred predict_out/ --gt data/Kvasir-SEG/masks   # predict's folder as it is

Inputs that cannot be scored (damaged or special files, size mismatches, NaN maps, ambiguous
names, non-binary masks, unmatched files) are listed on stderr, one line each, and the rest is
scored; the exit code then is 1 (see ``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odssam.cli.common import add_command_parser, add_no_progress_argument, add_output_argument, examples
from odssam.errors import OdsSamError
from odssam.metrics.evaluator import METRIC_NAMES
from odssam.metrics.folders import evaluate_folders
from odssam.metrics.report import LAYOUTS, format_table, read_results, results_to_json, write_report
from odssam.utils.atomic import check_writable_folder

# Folder names that say "masks" rather than which dataset they belong to.
_GENERIC_GT_NAMES = {"masks", "mask", "gt", "gts", "ground_truth", "ground truth", "groundtruth", "labels",
                     "annotations"}

EXIT_CODES = """exit codes:
  0  every input was scored
  1  some inputs could not be scored (each listed on stderr as 'skipped: FILE: REASON');
     the others were scored and the table/report written
  2  usage error (bad option, missing folder), nothing at all could be scored, or with
     --strict the first input that could not be scored"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command_parser(
        subparsers,
        "metrics",
        help="score prediction maps against ground-truth masks (paper-style tables)",
        description="Score a folder of prediction maps (PNG/TIFF probability maps, binary masks or float32 .npy "
        "maps) against ground-truth masks matched by file stem, and print a table laid out like the paper's; or "
        "combine JSON reports of several datasets/categories into one table with their mean. Inputs that "
        "cannot be scored are listed and skipped; the rest is scored.",
        epilog=examples(
            "odssam metrics --pred predictions --gt /data/Kvasir-SEG/masks        # odssam predict's folder as it is",
            "odssam metrics --pred pred/bottle --gt MVTec-AD/bottle/ground_truth --recursive --gt-suffix _mask \\",
            "    --missing-gt-empty --metrics default,auroc,aupro --output reports/",
            "odssam metrics --combine reports/bottle.json reports/cable.json --layout columns",
        ) + "\n\n" + EXIT_CODES,
    )
    parser.add_argument("--pred", type=Path,
                        help="folder of prediction maps, or an 'odssam predict' output folder (its probabilities/)")
    parser.add_argument("--gt", type=Path, help="folder of ground-truth masks (PNG/JPEG/BMP/TIFF/NPY)")
    parser.add_argument("--dataset", help="dataset/category name (default: from the ground-truth folder)")
    parser.add_argument("--method", help="method name: one row per method in the wide layout")
    parser.add_argument(
        "--metrics", default="default",
        help=f"comma-separated metric names from {', '.join(METRIC_NAMES)}, 'default' or 'all' "
        "(default: %(default)s = mae,emeasure,dice,iou,mdice,miou)",
    )
    add_output_argument(parser, "write <dataset>.json, .csv and .md reports into this folder", type=Path)
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    parser.add_argument("--layout", choices=LAYOUTS, default="columns",
                        help="columns: datasets as columns, metrics as rows (Table 1); wide: one row per "
                        "method, datasets x metrics as columns (Tables 2-3); rows: one row per dataset")
    parser.add_argument("--percent", action="store_true", help="show higher-is-better scores in percent")
    parser.add_argument("--digits", type=int, help="decimals shown (default: 3, or 2 with --percent)")
    parser.add_argument("--recursive", action="store_true",
                        help="match files in sub-folders by relative path (e.g. MVTec AD defect folders)")
    parser.add_argument("--gt-suffix", default="", help="suffix removed from ground-truth stems, e.g. _mask")
    parser.add_argument("--gt-threshold", type=int, default=127,
                        help="ground truth is > this value on the 8-bit scale (default: %(default)s)")
    parser.add_argument("--partial", action="store_true",
                        help="score only the ground truths that have a prediction instead of failing")
    parser.add_argument("--missing-gt-empty", action="store_true",
                        help="score predictions without a ground-truth file against an empty mask "
                        "(defect-free images such as MVTec AD test/good)")
    parser.add_argument("--exact-auc", action="store_true",
                        help="keep every pixel score for AUROC/AUPRO (exact for any float map; memory grows)")
    parser.add_argument("--combine", type=Path, nargs="+", metavar="JSON",
                        help="combine metrics reports written by --output into one table instead of scoring")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first input that cannot be scored (exit code 2) instead of listing it")
    add_no_progress_argument(parser, "no progress bar")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar, timing or notes on stderr (skipped inputs are still listed)")
    parser.set_defaults(func=run)


def _default_name(gt_dir: Path) -> str:
    folder = gt_dir.resolve()
    if folder.name.lower() in _GENERIC_GT_NAMES and folder.parent.name:
        return folder.parent.name
    return folder.name


def _progress_factory(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda iterable, total: tqdm(iterable, total=total, desc="scoring", unit="img", leave=False)


def _combined(paths: list[Path]):
    results: list = []
    methods: dict[str, list] = {}
    for path in paths:
        loaded = read_results(path)
        if isinstance(loaded, dict):
            for method, group in loaded.items():
                methods.setdefault(method, []).extend(group)
        else:
            results.extend(loaded)
    if results and methods:
        raise OdsSamError("cannot combine reports with and without method names; pass --method when scoring")
    return methods or results


def run(args: argparse.Namespace) -> int:
    exit_code = 0
    if args.output:
        check_writable_folder(args.output)
    if args.combine:
        if args.pred or args.gt:
            raise OdsSamError("--combine reads reports; do not pass --pred/--gt with it")
        results = _combined(args.combine)
        stem = args.dataset or "combined"
    else:
        if args.pred is None or args.gt is None:
            raise OdsSamError("--pred and --gt are both required (or --combine REPORT.json ...)")
        if not 0 <= args.gt_threshold <= 254:
            raise OdsSamError(f"--gt-threshold must lie in 0..254, got {args.gt_threshold}")
        name = args.dataset or _default_name(args.gt)
        show_progress = not (args.quiet or args.no_progress) and sys.stderr.isatty()
        score = evaluate_folders(
            args.pred, args.gt, name=name, metrics=args.metrics, recursive=args.recursive,
            gt_suffix=args.gt_suffix, partial=args.partial, missing_gt_empty=args.missing_gt_empty,
            gt_threshold=args.gt_threshold, exact_auc=args.exact_auc, strict=args.strict,
            progress=_progress_factory(show_progress),
        )
        if score.note and not args.quiet:
            print(score.note, file=sys.stderr)
        for problem in score.problems:
            print(f"skipped: {problem}", file=sys.stderr)
        n = score.result.n_images
        if n == 0:
            raise OdsSamError(f"nothing could be scored: {len(score.problems)} input(s) skipped (listed above)")
        results = {args.method: [score.result]} if args.method else [score.result]
        stem = name
        if not args.quiet:
            skipped = f", {score.skipped} ground truth(s) without prediction skipped" if score.skipped else ""
            print(
                f"scored {n} image(s) in {score.seconds_total:.2f} s: {n / max(score.seconds_total, 1e-9):.1f} "
                f"images/s with file reading, {n / max(score.seconds_metrics, 1e-9):.1f} images/s metrics "
                f"alone{skipped}",
                file=sys.stderr,
            )
        if score.problems:
            exit_code = 1
            print(f"{len(score.problems)} input(s) could not be scored and were skipped (listed above); "
                  f"{n} image(s) scored", file=sys.stderr)
    if args.output:
        written = write_report(results, args.output, _safe_stem(stem), layout=args.layout, percent=args.percent,
                               digits=args.digits)
        if not args.quiet:
            print("wrote " + ", ".join(str(path) for path in written.values()), file=sys.stderr)
    if args.json:
        print(results_to_json(results, include_curves=False), end="")
    else:
        print(format_table(results, layout=args.layout, percent=args.percent, digits=args.digits))
    return exit_code


def _safe_stem(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return stem or "metrics"

