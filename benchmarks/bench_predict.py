"""End-to-end prediction throughput (images/s): JPEG decode + preprocessing + model + postprocessing.

Two ways of predicting the same folder of generated JPEG images are timed:

* ``baseline``: naive and sequential: decode a batch of files in the main thread, then
  :func:`odssam.inference.batch.predict_probabilities` (preprocessing on the CPU, model,
  postprocessing) and
  the mask, max score and area fraction, at the same batch size and precision as ``ours``;
* ``ours``: :class:`odssam.inference.Predictor` (decoding in background threads while the
  model runs; on a GPU the resize runs there; bf16 autocast on CUDA).

Both produce HxW probability maps at the original size; files are not written (pass
``--write`` to add ``ours`` with the predict command's writers: masks, 8-bit probability
maps, overlays). SAM and the prompt encoder have random weights: speed does not depend on them.

Examples::

    python benchmarks/bench_predict.py --config tiny --device cpu                  # small config, CPU
    python benchmarks/bench_predict.py --config paper --device cuda --batch-size 8 \\
        --precision bf16 --images 96                                                # ViT-H, GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from odssam.config import ExperimentConfig, ModelConfig, from_dict, load_config, with_overrides
from odssam.data.image_io import read_image
from odssam.demo.synthetic import render_surface
from odssam.inference import PredictionWriter, Predictor
from odssam.inference.batch import predict_probabilities
from odssam.models.ods_sam import build_ods_sam
from odssam.utils.device import resolve_device, resolve_precision

TINY = {
    "sam": {"variant": "vit_micro", "checkpoint": None, "image_size": 256},
    "prompt_encoder": {
        "input_size": 64,
        "feature_encoder": {"backbone": "efficientvit_tiny", "neck_blocks": 1},
        "ssm": {"scan_backend": "auto", "chunk_size": 16, "d_state": 4, "dt_rank": 4, "expand": 1},
        "odconv": {"kernel_num": 4},
    },
}


def model_config(name: str) -> ModelConfig:
    """``tiny`` (configs/tiny.yaml's model), ``paper`` (ViT-H + the paper's prompt encoder) or a YAML path."""
    if name == "tiny":
        return from_dict(ExperimentConfig, {"model": TINY}).model
    config = ModelConfig() if name == "paper" else load_config(name).model
    return with_overrides(config, {"sam.checkpoint": None}, "model.")


def write_images(folder: Path, count: int, height: int, width: int, seed: int = 0) -> list[Path]:
    """``count`` JPEG files (quality 90) cycling over a few generated surfaces."""
    rng = np.random.default_rng(seed)
    distinct = [render_surface(rng, height, width)[0] for _ in range(min(count, 8))]
    paths = []
    for index in range(count):
        path = folder / f"image_{index:04d}.jpg"
        Image.fromarray(distinct[index % len(distinct)]).save(path, quality=90)
        paths.append(path)
    return paths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_baseline(model, paths: list[Path], batch_size: int, device: torch.device, amp_dtype, threshold: float = 0.5) -> int:
    done = 0
    for begin in range(0, len(paths), batch_size):
        images = [read_image(path) for path in paths[begin : begin + batch_size]]
        maps = predict_probabilities(model, images, amp_dtype)
        for probability in maps:  # the same outputs as ours: mask, max score, area fraction
            mask = probability > threshold
            float(probability.max()), np.count_nonzero(mask) / mask.size
        done += len(maps)
    return done


def run_ours(predictor: Predictor, paths: list[Path], output: Path | None) -> int:
    done = 0
    if output is None:
        for result in predictor.predict_stream(paths):
            done += result.ok
        return done
    with PredictionWriter(output) as writer:
        for result in predictor.predict_stream(paths, keep_images=True):
            writer.submit(result.prediction, result.image)
            done += 1
    return done


def timed(function, device: torch.device, repeats: int) -> tuple[float, int]:
    """Best wall time over ``repeats`` runs and the images of one run."""
    best, count = float("inf"), 0
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        count = function()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="tiny, paper (ViT-H) or an experiment YAML")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=32, help="images per timed pass")
    parser.add_argument("--height", type=int, default=960, help="height of the generated JPEGs")
    parser.add_argument("--width", type=int, default=1280, help="width of the generated JPEGs")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads of ours (default: up to 8 with a GPU, 2 on the CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per method (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--write", action="store_true", help="also time ours writing the predict command's files")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp_dtype = resolve_precision(args.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = model_config(args.config)
    model = build_ods_sam(config).to(device).eval()
    predictor = Predictor(
        model, device=device, precision=args.precision, batch_size=args.batch_size, num_workers=args.workers
    )
    precision = "bf16" if amp_dtype is not None else "fp32"

    rows = []
    with tempfile.TemporaryDirectory(prefix="odssam-bench-") as scratch:
        paths = write_images(Path(scratch), args.images, args.height, args.width)
        warmup = paths[: args.batch_size]
        for path in paths:  # warm the OS file cache: both methods read from memory
            path.read_bytes()
        methods = []
        if not args.skip_baseline:
            methods.append(("baseline", lambda ps: run_baseline(model, ps, args.batch_size, device, amp_dtype)))
        methods.append(("ours", lambda ps: run_ours(predictor, ps, None)))
        if args.write:
            out = Path(scratch) / "out"
            methods.append(("ours+write", lambda ps: run_ours(predictor, ps, out)))
        for name, method in methods:
            method(warmup)  # compile kernels, allocate, fill caches
            seconds, count = timed(lambda: method(paths), device, args.repeats)
            rows.append({"method": name, "images": count, "seconds": seconds, "images_per_second": count / seconds})

    info = {
        "config": args.config,
        "sam": f"{config.sam.variant} @ {config.sam.image_size}px",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type,
        "precision": precision,
        "batch_size": args.batch_size,
        "image_size": f"{args.width}x{args.height} JPEG",
        "decode_workers": predictor.num_workers,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "results": rows,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(
        f"predict throughput: {info['sam']} ({args.config}) on {info['device']} [{device.type}], {precision}, "
        f"batch {args.batch_size}, {info['image_size']}, {info['decode_workers']} decode threads, "
        f"{info['torch_threads']} torch threads"
    )
    baseline = next((r for r in rows if r["method"] == "baseline"), None)
    for row in rows:
        speedup = f"  x{row['images_per_second'] / baseline['images_per_second']:.2f}" if baseline else ""
        print(f"  {row['method']:<11} {row['images_per_second']:8.2f} img/s  ({row['images']} images in {row['seconds']:.2f} s){speedup}")


if __name__ == "__main__":
    main()
