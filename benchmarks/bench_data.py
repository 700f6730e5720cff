"""Decode speed of a dataset split: samples (image + mask) per second.

Example::

    python benchmarks/bench_data.py --dataset kvasir --root data/Kvasir-SEG --split train
    python benchmarks/bench_data.py --dataset monuseg --root data/MoNuSeg --image-size 512

Reports passes over the split in the main process (what one DataLoader worker
sustains): images only, then samples (image + mask, resized if asked) twice, and
optionally a pass through a ``DataLoader`` with ``--workers`` processes.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.data import DataLoader

from odssam.data import build_dataset, collate_samples, list_datasets, read_image


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=list_datasets())
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--category", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="decode only the first N samples")
    parser.add_argument("--workers", type=int, default=0, help="also time a DataLoader with N workers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)
    dataset = build_dataset(
        args.dataset, args.root, args.split, category=args.category, image_size=args.image_size
    )
    indices = list(range(len(dataset) if args.limit is None else min(args.limit, len(dataset))))

    for i in indices:  # warm the OS file cache so both passes below read from memory
        entry = dataset.entries[i]
        entry.image_path.read_bytes()
        if entry.mask_path is not None:
            entry.mask_path.read_bytes()

    pixels = 0
    start = time.perf_counter()
    for i in indices:
        image = read_image(dataset.entries[i].image_path)
        pixels += image.shape[0] * image.shape[1]
    image_seconds = time.perf_counter() - start

    sample_seconds = []
    for _ in range(2):  # the second pass shows the in-process cache of rasterised XML masks
        start = time.perf_counter()
        for i in indices:
            dataset[i]
        sample_seconds.append(time.perf_counter() - start)

    result = {
        "dataset": args.dataset,
        "split": args.split,
        "samples": len(indices),
        "image_size": args.image_size,
        "mean_megapixels": pixels / max(len(indices), 1) / 1e6,
        "images_per_s": _rate(len(indices), image_seconds),
        "samples_per_s": _rate(len(indices), sample_seconds[0]),
        "samples_per_s_second_pass": _rate(len(indices), sample_seconds[1]),
    }
    if args.workers:
        subset = torch.utils.data.Subset(dataset, indices)
        loader = DataLoader(subset, batch_size=10, num_workers=args.workers, collate_fn=collate_samples)
        start = time.perf_counter()
        for _ in loader:
            pass
        result[f"samples_per_s_{args.workers}_workers"] = _rate(len(indices), time.perf_counter() - start)

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value:.1f}" if isinstance(value, float) else f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
