"""``odssam profile``: parameters and FLOPs of the learnable and frozen parts (Table 7)."""

from __future__ import annotations

import json

from odssam.cli.common import add_command_parser, add_config_arguments, config_from_args, examples


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "profile",
        help="parameters and FLOPs of the prompt encoder and of the frozen SAM (paper Table 7)",
        description="Counts parameters and FLOPs on the meta device: no weights are allocated.",
        epilog=examples(
            "odssam profile                                    # the paper's model (SAM ViT-H)",
            "odssam profile --set model.sam.variant=vit_b --json",
            "odssam profile --config configs/tiny.yaml",
        ),
    )
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args) -> int:
    from odssam.models.profiling import format_profile, profile_model

    report = profile_model(config_from_args(args).model)
    print(json.dumps(report, indent=2) if args.json else format_profile(report))
    return 0
