"""``odssam demo``: the whole pipeline on generated data, in a few minutes on a laptop CPU.

::

    odssam demo                      # writes ./odssam-demo/ (or odssam-demo-2/ ... if taken)
    odssam demo --output my-demo --no-download

See :mod:`odssam.demo.run` for the steps and the files written.
"""

from __future__ import annotations

from odssam.cli.common import add_command_parser, add_no_progress_argument, add_output_argument, examples
from odssam.errors import OdsSamError


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "demo",
        help="generate a synthetic anomaly dataset, train briefly, evaluate and draw (start here)",
        description=(
            "Generate a small synthetic MVTec-AD-style dataset (textured surfaces with scratches, blobs and "
            "cracks), train the prompt encoder briefly, evaluate it, and write the report, overlays and a "
            "figure grid to a folder. Uses the official SAM ViT-B checkpoint if it is cached or can be "
            "downloaded; otherwise SAM has random weights and the scores are not meaningful (it says so)."
        ),
        epilog=examples(
            "odssam demo                                 # official SAM ViT-B if cached or downloadable",
            "odssam demo --random-sam --max-steps 20     # a one-minute smoke test, random SAM weights",
            "odssam demo --output my-demo --no-download --epochs 5",
        ),
    )
    add_output_argument(parser, "output folder (default: odssam-demo, or odssam-demo-N if taken)")
    parser.add_argument(
        "--images-per-defect", type=int, help="generated images per defect type (default 8; 5 with official SAM on CPU)"
    )
    parser.add_argument("--image-size", type=int, default=256, help="side of the generated images (default 256)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 30 with random SAM, 12 with official)")
    parser.add_argument("--max-steps", type=int, help="stop training after this many optimizer steps")
    parser.add_argument("--batch-size", type=int, default=4, help="training batch size (default 4)")
    parser.add_argument("--sam-checkpoint", help="use this SAM checkpoint file (variant read from the file)")
    parser.add_argument("--no-download", action="store_true", help="do not download SAM weights when none is cached")
    parser.add_argument("--random-sam", action="store_true", help="use random SAM weights (a quick smoke test)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the training")
    add_no_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from odssam.demo.run import DemoOptions, run_demo

    for flag, value, least in (
        ("--images-per-defect", args.images_per_defect, 2),
        ("--image-size", args.image_size, 32),
        ("--batch-size", args.batch_size, 1),
        ("--epochs", args.epochs, 1),
        ("--max-steps", args.max_steps, 1),
    ):
        if value is not None and value < least:
            raise OdsSamError(f"{flag} must be at least {least}, got {value}")
    run_demo(
        DemoOptions(
            output=args.output,
            per_defect=args.images_per_defect,
            image_size=args.image_size,
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            sam_checkpoint=args.sam_checkpoint,
            download=not args.no_download,
            random_sam=args.random_sam,
            device=args.device,
            seed=args.seed,
            progress=not args.no_progress,
        )
    )
    return 0
