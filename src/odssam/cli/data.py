"""``odssam data``: list, check and convert datasets.

- ``odssam data list``: registered datasets, their layouts and protocols.
- ``odssam data check --dataset NAME --root PATH [--category C] [--json]
  [--sam-image-size S]``: decode every file, print per-split counts, image sizes and
  foreground fraction, and every problem with the file it concerns (non-regular files,
  undecodable files, masks not binary at the loader's threshold, images too elongated
  for SAM's input). Exit code 0 when clean, 1 on problems. (``odssam train`` checks
  headers and file ends of every split it reads before its first step; this decodes all.)
- ``odssam data convert --dataset NAME --root PATH --output DIR``: write the masks
  (rasterised MoNuSeg XML, GlaS instance maps ...) as binary PNGs for inspection.
"""

from __future__ import annotations

import argparse
import json

from odssam.cli.common import add_command_parser, add_no_progress_argument, add_output_argument, examples
from odssam.data import check_dataset, convert_dataset, dataset_info, list_datasets
from odssam.data.check import SAM_IMAGE_SIZE


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=list_datasets(), help="dataset layout")
    parser.add_argument("--root", required=True, help="dataset folder in its original layout")
    parser.add_argument(
        "--category",
        default=None,
        help="MVTec AD category, PraNet test set or GlaS testA/testB (check: default all)",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="seed of seeded splits (MVTec AD, folders)")
    parser.add_argument(
        "--test-fraction", type=float, default=0.5, help="test fraction of seeded splits (MVTec AD, folders)"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command_parser(
        subparsers,
        "data",
        help="list, check and convert datasets",
        description="List the dataset layouts odssam reads, check a dataset folder file by file before "
        "training, or write its masks as binary PNGs. 'odssam data ACTION --help' describes each action.",
        epilog=examples(
            "odssam data list",
            "odssam data check --dataset kvasir --root /data/Kvasir-SEG",
            "odssam data convert --dataset monuseg --root /data/MoNuSeg --output monuseg-masks",
        ),
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _print_help(parser))

    listing = add_command_parser(
        actions, "list", help="registered datasets and what they expect on disk",
        epilog=examples("odssam data list", "odssam data list --json"),
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=run_list)

    check = add_command_parser(
        actions,
        "check",
        help="validate a dataset folder",
        description="Decode every file of a dataset and report per-split counts, image sizes, foreground "
        "fraction and every problem with the file it concerns. Exit code 0 when clean, 1 on problems.",
        epilog=examples(
            "odssam data check --dataset kvasir --root /data/Kvasir-SEG",
            "odssam data check --dataset mvtec --root /data/mvtec --category bottle --json",
            "odssam data check --dataset folder --root my_dataset --sam-image-size 256   # for configs/tiny.yaml",
        ),
    )
    _add_dataset_arguments(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--strict", action="store_true", help="treat warnings as problems")
    check.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    add_no_progress_argument(check, "no progress bar (default: one when stderr is a terminal)")
    check.add_argument(
        "--sam-image-size",
        type=int,
        default=SAM_IMAGE_SIZE,
        help="SAM input side of the model to train (model.sam.image_size; default 1024, "
        "configs/tiny.yaml 256): images more elongated than 2x this to 1 are problems",
    )
    check.set_defaults(func=run_check)

    convert = add_command_parser(
        actions,
        "convert",
        help="write masks as binary PNGs (0/255)",
        epilog=examples(
            "odssam data convert --dataset monuseg --root /data/MoNuSeg --output monuseg-masks",
            "odssam data convert --dataset glas --root /data/GlaS --output glas-folder --images --split test",
        ),
    )
    _add_dataset_arguments(convert)
    add_output_argument(convert, "output folder: <output>/<split>/masks/<name>.png", required=True)
    convert.add_argument(
        "--split",
        action="append",
        choices=["train", "val", "test"],
        help="split(s) to write (default: train, test)",
    )
    convert.add_argument("--images", action="store_true", help="also write images: a `folder` dataset")
    convert.add_argument("--image-size", type=int, default=None, help="resize to this square size")
    convert.add_argument("--include-good", action="store_true", help="MVTec AD: include defect-free images")
    convert.set_defaults(func=run_convert)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_list(args: argparse.Namespace) -> int:
    infos = [dataset_info(name) for name in list_datasets()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        side = info["paper_image_size"]
        size = f"; images at {side}x{side}" if side else ""
        print(f"{info['name']:<9} {info['title']}")
        print(f"          layout:   {info['layout']}")
        print(f"          protocol: {info['protocol']}{size}")
        if info["categories"]:
            print(f"          categories: {', '.join(info['categories'])}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    report = check_dataset(
        args.dataset,
        args.root,
        args.category,
        split_seed=args.split_seed,
        test_fraction=args.test_fraction,
        progress=False if args.no_progress else (True if args.progress else None),
        sam_image_size=args.sam_image_size,
    )
    failed = not report.ok or (args.strict and report.warnings)
    if args.json:
        payload = report.to_dict()
        payload["ok"] = not failed
        print(json.dumps(payload, indent=2))
    else:
        print(report.format_text())
    return 1 if failed else 0


def run_convert(args: argparse.Namespace) -> int:
    written = convert_dataset(
        args.dataset,
        args.root,
        args.output,
        splits=tuple(args.split or ("train", "test")),
        category=args.category,
        with_images=args.images,
        image_size=args.image_size,
        include_good=args.include_good,
        split_seed=args.split_seed,
        test_fraction=args.test_fraction,
        progress=False,
    )
    for split, count in written.items():
        print(f"{split}: {count} masks written to {args.output}/{split}/masks/")
    return 0
