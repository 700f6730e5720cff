"""Throughput of the metric computation: images per second at 1024x1024.

Example::

    python benchmarks/bench_metrics.py                 # 20 images of 1024x1024
    python benchmarks/bench_metrics.py --size 512 --images 50 --json

Times :meth:`odssam.metrics.Evaluator.update` on generated probability maps (blob-shaped
masks, blurred and noisy predictions, float32 as a model outputs them) for several metric
sets, and the same maps through PySODMetrics (MAE + E-measure + dynamic Dice/IoU, the
reference tools) when it is installed. Reports wall-clock and CPU-time rates (on a shared
machine the CPU-time rate is the steadier figure).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from odssam.metrics import Evaluator

METRIC_SETS = {
    "paper (mae,emeasure,dice,iou,mdice,miou)": "default",
    "paper + auroc,aupro": "default,auroc,aupro",
    "all (+ smeasure, wfmeasure)": "all",
}


def make_maps(n: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (float32 probability map, bool mask) pairs of ``size`` x ``size``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    pairs = []
    for _ in range(n):
        distance = np.full((size, size), np.inf, dtype=np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
            distance = np.minimum(distance, np.hypot(yy - cy, xx - cx) / r)
        gt = distance <= 1
        logits = np.clip((1.0 - distance) * 8 + rng.normal(0, 1.0, (size, size)).astype(np.float32), -30, 30)
        prob = (1 / (1 + np.exp(-logits))).astype(np.float32)
        pairs.append((prob, gt))
    return pairs


def time_evaluator(pairs, metrics: str, repeats: int) -> tuple[float, float]:
    """Best (wall, cpu) seconds over ``repeats`` passes."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        evaluator = Evaluator(metrics=metrics)
        wall, cpu = time.perf_counter(), time.process_time()
        for prob, gt in pairs:
            evaluator.update(prob, gt)
        evaluator.compute()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def time_pysodmetrics(pairs, repeats: int) -> tuple[float, float] | None:
    try:
        import py_sod_metrics as psm
    except ImportError:
        return None
    uint8_pairs = [((p * 255).astype(np.uint8), g.astype(np.uint8) * 255) for p, g in pairs]
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        handlers = {
            "dice": psm.DICEHandler(with_dynamic=True, with_adaptive=False),
            "iou": psm.IOUHandler(with_dynamic=True, with_adaptive=False),
        }
        metrics = (psm.MAE(), psm.Emeasure(), psm.FmeasureV2(handlers))
        wall, cpu = time.perf_counter(), time.process_time()
        for pred, gt in uint8_pairs:
            for metric in metrics:
                metric.step(pred=pred, gt=gt)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pairs = make_maps(args.images, args.size)
    rows = []
    for label, metrics in METRIC_SETS.items():
        wall, cpu = time_evaluator(pairs, metrics, args.repeats)
        rows.append({"what": f"odssam {label}", "images_per_s": args.images / wall,
                     "cpu_images_per_s": args.images / cpu})
    reference = time_pysodmetrics(pairs, args.repeats)
    if reference is not None:
        wall, cpu = reference
        rows.append({"what": "PySODMetrics MAE+Emeasure+Dice/IoU (reference)", "images_per_s": args.images / wall,
                     "cpu_images_per_s": args.images / cpu})
    if args.json:
        print(json.dumps({"size": args.size, "images": args.images, "results": rows}, indent=2))
        return
    print(f"{args.images} images of {args.size}x{args.size}, best of {args.repeats}")
    for row in rows:
        rate, cpu_rate = row["images_per_s"], row["cpu_images_per_s"]
        print(f"  {row['what']:<50} {rate:8.1f} images/s  ({cpu_rate:.1f} per CPU-second)")


if __name__ == "__main__":
    main()
