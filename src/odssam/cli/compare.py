"""``odssam compare``: one table and one figure across finished training runs.

Examples::

    odssam compare runs/kvasir runs/kvasir_unet runs/kvasir_autosam --output compare
    odssam compare runs/monuseg runs/ablation_odssm --label runs/monuseg=ODS-SAM --images 6
    odssam compare runs/mvtec_* --no-speed
"""

from __future__ import annotations

from odssam.cli.common import add_command_parser, add_output_argument, examples


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "compare",
        help="compare finished runs: one table (scores, parameters, FLOPs, training time, speed) and a figure",
        description="Compare the run folders of 'odssam train' in the paper's layout: one row per "
        "method, one column per test set and metric, then learnable parameters, GFLOPs, training "
        "hours and prediction images/s on this device (Table 7 extended), with the paper's "
        "published figures under the methods it reports. Runs sharing a label form one row "
        "(e.g. one model per MVTec AD category). Runs tested on different data in one column "
        "are refused. Writes OUTPUT/compare.md, OUTPUT/compare.csv and OUTPUT/figure-<test set>.png "
        "(the same seeded test images, one column per method).",
        epilog=examples(
            "odssam compare runs/kvasir runs/kvasir_unet runs/kvasir_autosam --output compare",
            "odssam compare runs/monuseg runs/ablation_odssm --label runs/monuseg=ODS-SAM --images 6",
            "odssam compare runs/mvtec_bottle runs/mvtec_cable --no-speed",
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders of 'odssam train'")
    add_output_argument(parser, "output folder (default: compare)", default="compare")
    parser.add_argument(
        "--label", dest="labels", action="append", default=[], metavar="RUN=NAME",
        help="name the method of run folder RUN (as given, or its folder name) NAME (repeatable); "
        "default: the model's name plus the model settings that differ between the runs",
    )  # fmt: skip
    parser.add_argument(
        "--images", type=int, default=4, metavar="N", help="test images per figure; 0: no figure (default 4)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the figure's choice of test images (default 0)")
    parser.add_argument("--no-speed", action="store_true", help="do not time the prediction (no img/s column)")
    parser.add_argument(
        "--speed-images", type=int, default=32, metavar="N",
        help="images timed per method after a warm-up batch (default 32)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward pass (default 8)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--sam-checkpoint", metavar="PATH",
        help="SAM weights to load the runs' models with, where the path in their configs is not on this machine",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args) -> int:
    from odssam.reproduce.compare_runs import CompareOptions, compare_runs
    from odssam.reproduce.methods import parse_label_overrides

    options = CompareOptions(
        images=args.images, seed=args.seed, speed=not args.no_speed, speed_images=args.speed_images,
        batch_size=args.batch_size, device=args.device, sam_checkpoint=args.sam_checkpoint,
    )  # fmt: skip
    outcome = compare_runs(args.runs, args.output, parse_label_overrides(args.labels), options)
    print(outcome.paths["md"].read_text(encoding="utf-8"))
    written = [outcome.paths["md"], outcome.paths["csv"], *outcome.figures.values()]
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
