"""``odssam weights``: list, download and verify SAM checkpoints and the feature encoder's published weights."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from odssam.cli.common import add_command_parser, add_no_progress_argument, examples
from odssam.errors import OdsSamError
from odssam.models.checkpoints import (
    OFFICIAL_CHECKPOINTS,
    Digest,
    default_cache_dir,
    download_checkpoint,
    file_digest,
    has_valid_stamp,
    official_checkpoint_by_file_name,
    verify_file,
)
from odssam.models.feature_encoder_weights import (
    PUBLISHED_WEIGHTS,
    check_published_weights_file,
    download_published_weights,
    published_weights_by_file_name,
)
from odssam.models.sam import (
    SAM_REGISTRY,
    build_sam,
    check_sam_state_dict,
    describe_sam_state_dict,
    find_sam_variant,
    read_sam_state_dict,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command_parser(
        subparsers,
        "weights",
        help="list, download and verify SAM and feature-encoder weights",
        description="List the official SAM checkpoints and the feature encoder's published weights with their "
        "cache status, download them (verified against their digests), or verify a file you have. "
        "'odssam weights ACTION --help' describes each action.",
        epilog=examples(
            "odssam weights list",
            "odssam weights download vit_b",
            "odssam weights verify ~/.cache/odssam/sam_vit_b_01ec64.pth",
        ),
    )
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    listing = add_command_parser(
        actions, "list", help="official weight files and whether they are cached",
        epilog=examples("odssam weights list", "odssam weights list --dir checkpoints/"),
    )
    listing.add_argument("--dir", type=Path, help=f"checkpoint directory (default: {default_cache_dir()})")
    listing.set_defaults(func=run_list)

    download = add_command_parser(
        actions,
        "download",
        help="download and verify an official checkpoint",
        epilog=examples(
            "odssam weights download vit_h",
            "odssam weights download vit_b --dir checkpoints/ --no-progress",
            "odssam weights download vit_b --url https://mirror.example.org/sam_vit_b_01ec64.pth",
        ),
    )
    download.add_argument(
        "variant",
        choices=[*OFFICIAL_CHECKPOINTS, *PUBLISHED_WEIGHTS],
        metavar="VARIANT",
        help=f"a SAM variant or feature-encoder weights: {', '.join([*OFFICIAL_CHECKPOINTS, *PUBLISHED_WEIGHTS])}",
    )
    download.add_argument("--dir", type=Path, help=f"target directory (default: {default_cache_dir()})")
    download.add_argument("--url", help="a mirror of the official file (still verified against its digest)")
    download.add_argument("--digest", help="expected digest as ALGORITHM:HEX (md5 or sha256) for a custom file")
    add_no_progress_argument(download, "no progress bar", aliases=("--quiet",))
    download.set_defaults(func=run_download)

    verify = add_command_parser(
        actions,
        "verify",
        help="check a checkpoint's digest and that it loads into SAM (or into the feature encoder)",
        epilog=examples(
            "odssam weights verify sam_vit_h_4b8939.pth",
            "odssam weights verify my_sam.pth --variant vit_b --digest sha256:HEX",
        ),
    )
    verify.add_argument("path", type=Path, metavar="PATH")
    verify.add_argument(
        "--variant",
        choices=[*SAM_REGISTRY, *PUBLISHED_WEIGHTS],
        help="SAM variant or feature-encoder weights the file must fit (default: from its name or contents)",
    )
    verify.add_argument("--digest", help="expected digest as ALGORITHM:HEX (default: the official one)")
    verify.set_defaults(func=run_verify)


def _cache_status(path, digest) -> str:
    if has_valid_stamp(path, digest):
        return f"cached, verified: {path}"
    if path.is_file():
        return f"cached, not verified (see odssam weights verify): {path}"
    return "not cached"


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def run_list(args: argparse.Namespace) -> int:
    directory = args.dir.expanduser() if args.dir else default_cache_dir()
    rows = [("variant", "file", "digest", "size", "status")]
    for variant in SAM_REGISTRY:
        official = OFFICIAL_CHECKPOINTS.get(variant)
        if official is None:
            rows.append((variant, "-", "-", "-", "test config, random weights only"))
            continue
        status = _cache_status(directory / official.file_name, official.digest)
        rows.append((variant, official.file_name, str(official.digest), _human_size(official.size_bytes), status))
    for weights in PUBLISHED_WEIGHTS.values():
        status = _cache_status(directory / weights.file_name, weights.digest)
        rows.append((weights.name, weights.file_name, str(weights.digest), "-", f"feature encoder; {status}"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    print(f"checkpoint directory: {directory}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    expected = Digest.parse(args.digest) if args.digest else None
    if args.variant in PUBLISHED_WEIGHTS:
        path = download_published_weights(args.variant, args.dir, args.url, not args.no_progress, expected)
        print(path)
        return 0
    official = OFFICIAL_CHECKPOINTS[args.variant]
    path = download_checkpoint(
        args.url or args.variant,
        dest_dir=args.dir,
        expected=expected or official.digest,
        progress=not args.no_progress,
        file_name=official.file_name,
    )
    print(path)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    path: Path = args.path.expanduser()
    published = PUBLISHED_WEIGHTS.get(args.variant) if args.variant else published_weights_by_file_name(path.name)
    if published is not None:
        expected = Digest.parse(args.digest) if args.digest else published.digest
        verify_file(path, expected)
        origin = "the given digest" if args.digest else f"the published {published.name} file"
        print(f"{path}: {expected.algorithm} {expected.hexdigest} matches {origin}")
        print(f"{path}: {check_published_weights_file(path, published)}")
        return 0
    official = OFFICIAL_CHECKPOINTS.get(args.variant) if args.variant else official_checkpoint_by_file_name(path.name)
    expected = Digest.parse(args.digest) if args.digest else (official.digest if official else None)
    if expected is not None:
        verify_file(path, expected)
        origin = f"the official {official.variant} checkpoint" if official and not args.digest else "the given digest"
        print(f"{path}: {expected.algorithm} {expected.hexdigest} matches {origin}")
    else:
        print(f"{path}: sha256 {file_digest(path, 'sha256')} (no published digest to compare with)")

    state = read_sam_state_dict(path)
    description = describe_sam_state_dict(state)
    variant = args.variant or (find_sam_variant(description[0]) if description is not None else None)
    if variant is None:
        raise OdsSamError(f"{path}: cannot tell which SAM variant this is; pass --variant")
    image_size = description[1] if description is not None else 1024
    with torch.device("meta"):
        model = build_sam(variant, image_size=image_size)
    check_sam_state_dict(model, state, path)
    parameters = sum(tensor.numel() for tensor in state.values())
    print(f"{path}: state dict fits SAM {variant} at image_size {image_size} ({parameters / 1e6:.2f} M values)")
    return 0
