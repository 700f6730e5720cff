"""``odssam reproduce``: train every experiment of one paper table and compare with the paper.

Examples::

    odssam reproduce table3 --data-root /data --dry-run          # what would run, split sizes
    odssam reproduce table3 --data-root /data --sam-checkpoint sam_vit_h_4b8939.pth
    odssam reproduce table1 --data-root /data --set train.epochs=3 --set model.sam.checkpoint=null
    odssam reproduce table7                                        # parameters and FLOPs only
"""

from __future__ import annotations

from pathlib import Path

from odssam.cli.common import (
    add_command_parser,
    add_no_progress_argument,
    add_output_argument,
    add_set_argument,
    examples,
)
from odssam.errors import OdsSamError

TABLE_HELP = (
    "table1 (MVTec AD, 15 models), table2 (PraNet polyp protocol), table3 (MoNuSeg, GlaS), "
    "table4/table5/table6 (ablations on MoNuSeg and GlaS), table7 (parameters and FLOPs, no training)"
)
DATA_ROOT_HELP = (
    "folder holding the datasets: MVTec-AD/ (the category folders), PraNet/ (TrainDataset/, "
    "TestDataset/), MoNuSeg/, GlaS/ (case-insensitive; a few usual variants of each name are "
    "accepted, and the folder itself is tried last)"
)


def add_parser(subparsers) -> None:
    from odssam.reproduce.tables import TABLES

    parser = add_command_parser(
        subparsers,
        "reproduce",
        help="train and evaluate every experiment of a paper table; write it next to the paper's numbers",
        description="Run one paper table with the paper's recipe (the packaged paper configs): "
        "one run folder per experiment under OUTPUT/TABLE/ (finished runs are skipped, "
        "interrupted ones resumed), then TABLE.md and TABLE.csv with ours, the paper's figure "
        "and the difference, the hours spent per run, and the datasets that were missing.",
        epilog=examples(
            "odssam reproduce table3 --data-root /data --dry-run          # what would run, split sizes",
            "odssam reproduce table3 --data-root /data --sam-checkpoint sam_vit_h_4b8939.pth",
            "odssam reproduce table1 --data-root /data --set train.epochs=3 --set model.sam.checkpoint=null",
            "odssam reproduce table7                                        # parameters and FLOPs only",
        ),
    )
    parser.add_argument("table", choices=list(TABLES), metavar="TABLE", help=TABLE_HELP)
    parser.add_argument("--data-root", metavar="DIR", help=DATA_ROOT_HELP + " (not needed for table7)")
    parser.add_argument("--sam-checkpoint", metavar="PATH", help="SAM weights for every run (model.sam.checkpoint)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, datasets and split sizes; train nothing")
    add_set_argument(parser, "override a config value in every run, e.g. --set train.epochs=3 (repeatable)")
    add_output_argument(parser, "output folder (default: reproduce)", default="reproduce")
    parser.add_argument(
        "--configs", metavar="DIR", help="folder of paper configs to use instead of the packaged ones (configs/)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_no_progress_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from odssam.reproduce.configs import config_dir
    from odssam.reproduce.tables import get_table

    spec = get_table(args.table)
    folder = config_dir(args.configs)
    out_dir = Path(args.output) / spec.name
    if not spec.experiments:
        return _profile(spec, folder, args, out_dir)
    if not args.data_root:
        raise OdsSamError(f"{spec.name} trains models: give --data-root DIR (the folder holding the datasets)")
    data_root = Path(args.data_root)
    if not data_root.is_dir():
        raise OdsSamError(f"--data-root {data_root}: not a folder")
    return _train_table(spec, folder, data_root, out_dir, args)


def _train_table(spec, folder: Path, data_root: Path, out_dir: Path, args) -> int:
    from odssam.reproduce.report import missing_lines, plan_markdown, random_weights_banner, write_table_report
    from odssam.reproduce.runner import plan_table, run_planned

    runs = plan_table(spec, data_root, args.output, folder, args.overrides, args.sam_checkpoint)
    banner = random_weights_banner(runs)
    print(f"{spec.caption}: {len(runs)} run(s), configs from {folder}")
    print(plan_markdown(runs))
    missing = missing_lines(runs)
    if missing:
        print("missing datasets (runs needing them are skipped; missing test sets are not scored):")
        print("\n".join(f"  - {line}" for line in missing))
    if banner:
        print(f"*** {banner} ***")
    if args.dry_run:
        return 0
    outcomes = run_planned(runs, device=args.device, progress=not args.no_progress)
    paths = write_table_report(spec, runs, out_dir, outcomes)
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"wrote {paths['md']}, {paths['csv']} and {paths['runs']}")
    failed = [o.run.experiment.run for o in outcomes if o.action == "failed"]
    if failed:
        print(f"failed runs: {', '.join(failed)}")
        return 1
    return 0


def _profile(spec, folder: Path, args, out_dir: Path) -> int:
    from odssam.engine.logging import write_json_atomic
    from odssam.models.profiling import profile_model
    from odssam.reproduce.comparison import write_comparison
    from odssam.reproduce.report import profile_comparison
    from odssam.reproduce.runner import experiment_config
    from odssam.reproduce.tables import PROFILE_CONFIG, Experiment

    experiment = Experiment("profile", PROFILE_CONFIG, "monuseg", spec.rows[0])
    cfg = experiment_config(folder, experiment, args.overrides, args.sam_checkpoint, out_dir / "profile")
    if args.dry_run:
        print(f"{spec.caption}: profiles the model of {folder / PROFILE_CONFIG} (no training, no data)")
        return 0
    report = profile_model(cfg.model)
    table = profile_comparison(spec, report)
    paths = write_comparison(table, out_dir, spec.name)
    write_json_atomic(out_dir / "profile.json", report)
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"wrote {paths['md']}, {paths['csv']} and {out_dir / 'profile.json'}")
    return 0
