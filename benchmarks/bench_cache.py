"""Embedding-cache build throughput (images/s): sequential against pipelined, same files.

A folder dataset of generated JPEG images (Kvasir-SEG's sizes by default) and PNG masks
is cached into fresh folders: ``sequential`` (encode, copy, write, one batch at a time,
the eager encoder: the reference) and ``pipelined`` (one batch in flight, asynchronous
copies, entries written by a thread pool; on a GPU the encoder is a replayed CUDA graph),
and on a GPU also ``pipelined-eager`` (the same without the graph, to measure its gain in
the same run), with the trainer's DataLoader workers. The caches are compared file by file. SAM has random weights: speed does not depend on them. Before the
timed runs one small build warms up the model (kernel selection, allocator).

Examples::

    python benchmarks/bench_cache.py --config tiny --device cpu --images 32
    python benchmarks/bench_cache.py --config paper --device cuda --images 400 --workers 8   # ViT-H, GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import KVASIR_SIZES, add_model_arguments, model_config  # noqa: E402

from odssam.data import build_dataset  # noqa: E402
from odssam.data.synthetic import render_surface  # noqa: E402
from odssam.engine.cache import CacheParams, EmbeddingCache, build_embedding_cache  # noqa: E402
from odssam.engine.distributed import DistInfo  # noqa: E402
from odssam.models.ods_sam import build_ods_sam  # noqa: E402
from odssam.utils.device import resolve_device, resolve_precision  # noqa: E402


def write_dataset(root: Path, count: int, sizes: list[tuple[int, int]]) -> Path:
    """``count`` JPEG images (quality 90) and PNG masks in ``root/train/{images,masks}``."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, mask = render_surface(rng, *sizes[index % len(sizes)])[:2]
        Image.fromarray(image).save(root / "train" / "images" / f"image_{index:04d}.jpg", quality=90)
        Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).save(root / "train" / "masks" / f"image_{index:04d}.png")
    return root


def cache_bytes(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*.npy"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (data.num_workers)")
    parser.add_argument("--write-threads", type=int, default=None, help="pipelined writers (default: one per core, <= 8)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    device = resolve_device(args.device)
    amp_dtype = resolve_precision(args.precision, device)
    model = build_ods_sam(model_config(args.config)).to(device).eval()
    params = CacheParams(model.frozen_fingerprint(), model.image_size, model.prompt_input_size, model.logit_size)
    info = DistInfo(device=device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="odssam-bench-cache-") as scratch:
        dataset = build_dataset("folder", write_dataset(Path(scratch) / "data", args.images, KVASIR_SIZES), "train")
        common = dict(batch_size=args.batch_size, num_workers=args.workers, autocast_dtype=amp_dtype)
        warmup = torch.utils.data.Subset(dataset, range(min(len(dataset), 2 * args.batch_size)))
        build_embedding_cache(model, warmup, EmbeddingCache(Path(scratch) / "warmup", params), info, **common)
        caches = {}
        methods = [("sequential", False, False), ("pipelined", True, True)]
        if device.type == "cuda":  # on the CPU there is no graph: pipelined is already eager
            methods.append(("pipelined-eager", True, False))
        for name, pipelined, cuda_graph in methods:
            caches[name] = Path(scratch) / name
            start = time.perf_counter()
            _, stats = build_embedding_cache(
                model, dataset, EmbeddingCache(caches[name], params), info,
                pipelined=pipelined, write_threads=args.write_threads, cuda_graph=cuda_graph, **common,
            )
            seconds = time.perf_counter() - start
            rows.append({"method": name, "images": stats.images, "seconds": seconds, "images_per_second": stats.images / seconds})
        reference = cache_bytes(caches["sequential"])
        identical = all(cache_bytes(caches[name]) == reference for name, _, _ in methods[1:])
    result = {
        "config": args.config,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": "bf16" if amp_dtype is not None else "fp32",
        "batch_size": args.batch_size,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "identical_files": identical,
        "results": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"cache build: {args.config} on {result['device']}, {result['precision']}, batch {args.batch_size}, "
        f"{args.workers} loader workers, Kvasir-SEG sizes; identical files: {identical}"
    )
    for row in rows:
        print(f"  {row['method']:<15} {row['images_per_second']:8.2f} img/s  ({row['images']} images in {row['seconds']:.2f} s)")
    by_name = {row["method"]: row for row in rows}
    if "pipelined-eager" in by_name:
        ratio = by_name["pipelined"]["images_per_second"] / by_name["pipelined-eager"]["images_per_second"]
        print(f"  CUDA graph: pipelined / pipelined-eager x{ratio:.2f}")


if __name__ == "__main__":
    main()
