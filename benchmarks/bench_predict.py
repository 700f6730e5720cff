"""End-to-end prediction throughput (images/s): JPEG decode + preprocessing + model + postprocessing.

Two ways of predicting the same folder of generated JPEG images are timed:

* ``baseline``: naive and sequential: decode a batch of files in the main thread, then
  :func:`odssam.inference.batch.predict_probabilities` (preprocessing on the CPU, model,
  postprocessing) and
  the mask, max score and area fraction, at the same batch size and precision as ``ours``;
* ``ours``: :class:`odssam.inference.Predictor` (decoding in background threads while the
  model runs; on a GPU the resize runs there and the model's forward is a replayed CUDA
  graph; bf16 autocast on CUDA);
* ``ours-eager`` (GPU only): the same predictor with ``cuda_graph=False``, so that the
  graph's gain is measured in the same run.

Both produce HxW probability maps at the original size; files are not written (pass
``--write`` to add ``ours`` with the predict command's writers: masks, 8-bit probability
maps, overlays, and the host's time per image of each step: decoding and each file written,
one thread). ``--sizes kvasir`` generates images of Kvasir-SEG's sizes (mostly 622x530, a few
of 720x576 and 1350x1080) instead of ``--width`` x ``--height``. SAM and the prompt encoder
have random weights: speed does not depend on them (the written files' sizes do a little).

Examples::

    python benchmarks/bench_predict.py --config tiny --device cpu                  # small config, CPU
    python benchmarks/bench_predict.py --config paper --device cuda --batch-size 8 \\
        --precision bf16 --images 96                                                # ViT-H, GPU
    python benchmarks/bench_predict.py --config paper --device cuda --precision bf16 \\
        --images 400 --sizes kvasir --write --skip-baseline                         # predict's writing
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
from odssam.inference import PredictionWriter, Predictor, write_mask_png, write_overlay_png, write_probability_png
from odssam.inference.batch import predict_probabilities
from odssam.inference.graphed_forward import WARMUP_CALLS
from odssam.models.ods_sam import build_ods_sam
from odssam.inference.write_pool import default_write_threads
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


# Kvasir-SEG's 1000 images: ~90 % about 622x530, the rest mostly 720x576 or ~1350x1080 (HxW here).
KVASIR_SIZES = [(530, 622)] * 14 + [(576, 720), (1080, 1350)]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--device``, ``--precision`` and ``--batch-size`` (shared with bench_cache.py)."""
    parser.add_argument("--config", default="tiny", help="tiny, paper (ViT-H) or an experiment YAML")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--batch-size", type=int, default=8)


def write_images(folder: Path, count: int, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """``count`` JPEG files (quality 90) cycling over ``sizes`` (HxW) and a few generated surfaces."""
    rng = np.random.default_rng(seed)
    distinct = {}
    paths = []
    for index in range(count):
        size, variant = sizes[index % len(sizes)], index % min(count, 8)
        if (size, variant) not in distinct:
            distinct[size, variant] = render_surface(rng, *size)[0]
        path = folder / f"image_{index:04d}.jpg"
        Image.fromarray(distinct[size, variant]).save(path, quality=90)
        paths.append(path)
    return paths


def host_step_ms(predictor: Predictor, paths: list[Path], folder: Path) -> dict[str, float]:
    """Milliseconds per image of each host step of ``odssam predict``, in one thread, on real predictions."""
    results = [r for r in predictor.predict_stream(paths, keep_images=True) if r.ok]
    steps = {
        "decode": lambda r: read_image(r.source),
        "mask_png": lambda r: write_mask_png(r.prediction.mask, folder / "mask.png"),
        "probability_png": lambda r: write_probability_png(r.prediction.probability, folder / "probability.png"),
        "overlay_png": lambda r: write_overlay_png(r.image, r.prediction.mask, folder / "overlay.png"),
    }
    timings = {}
    for name, step in steps.items():
        start = time.perf_counter()
        for result in results:
            step(result)
        timings[name] = (time.perf_counter() - start) * 1e3 / max(len(results), 1)
    return timings


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


def run_ours(predictor: Predictor, paths: list[Path], output: Path | None, write_threads: int | None = None) -> int:
    done = 0
    if output is None:
        for result in predictor.predict_stream(paths):
            done += result.ok
        return done
    with PredictionWriter(output, workers=write_threads) as writer:
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
    add_model_arguments(parser)
    parser.add_argument("--images", type=int, default=32, help="images per timed pass")
    parser.add_argument("--height", type=int, default=960, help="height of the generated JPEGs")
    parser.add_argument("--width", type=int, default=1280, help="width of the generated JPEGs")
    parser.add_argument(
        "--sizes", default="fixed", choices=("fixed", "kvasir"),
        help="fixed: every image --width x --height; kvasir: Kvasir-SEG's mix of sizes (mostly 622x530)",
    )
    parser.add_argument("--workers", type=int, default=None, help="decoding threads of ours (default: up to 8 with a GPU, 2 on the CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per method (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--write", action="store_true", help="also time ours writing the predict command's files")
    parser.add_argument(
        "--write-threads", type=int, default=None, help="writer threads with --write (default: the predict command's)"
    )
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
    eager_predictor = None
    if device.type == "cuda":  # on the CPU there is no graph: ours is already eager
        eager_predictor = Predictor(
            model, device=device, precision=args.precision, batch_size=args.batch_size, num_workers=args.workers,
            cuda_graph=False,
        )
    precision = "bf16" if amp_dtype is not None else "fp32"

    rows = []
    host_steps = None
    sizes = KVASIR_SIZES if args.sizes == "kvasir" else [(args.height, args.width)]
    write_threads = default_write_threads() if args.write_threads is None else args.write_threads
    with tempfile.TemporaryDirectory(prefix="odssam-bench-") as scratch:
        paths = write_images(Path(scratch), args.images, sizes)
        # Enough batches for the CUDA graph's eager warm-up calls and its capture.
        warmup = paths[: (WARMUP_CALLS + 1) * args.batch_size]
        for path in paths:  # warm the OS file cache: both methods read from memory
            path.read_bytes()
        methods = []
        if not args.skip_baseline:
            methods.append(("baseline", lambda ps: run_baseline(model, ps, args.batch_size, device, amp_dtype)))
        methods.append(("ours", lambda ps: run_ours(predictor, ps, None)))
        if eager_predictor is not None:
            methods.append(("ours-eager", lambda ps: run_ours(eager_predictor, ps, None)))
        if args.write:
            out = Path(scratch) / "out"
            methods.append(("ours+write", lambda ps: run_ours(predictor, ps, out, write_threads)))
        for name, method in methods:
            method(warmup)  # compile kernels, allocate, fill caches
            seconds, count = timed(lambda: method(paths), device, args.repeats)
            rows.append({"method": name, "images": count, "seconds": seconds, "images_per_second": count / seconds})
        if args.write:
            host_steps = host_step_ms(predictor, paths[: max(len(sizes), 16)], Path(scratch))

    info = {
        "config": args.config,
        "sam": f"{config.sam.variant} @ {config.sam.image_size}px",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type,
        "precision": precision,
        "batch_size": args.batch_size,
        "image_size": "Kvasir-SEG sizes (WxH " + ", ".join(f"{w}x{h}" for h, w in sorted(set(sizes))) + ") JPEG"
        if args.sizes == "kvasir"
        else f"{args.width}x{args.height} JPEG",
        "decode_workers": predictor.num_workers,
        "cuda_graph": predictor.inference.graphed_forward is not None
        and predictor.inference.graphed_forward.graph is not None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "results": rows,
    }
    if args.write:
        info["write_threads"] = write_threads
        info["host_ms_per_image"] = host_steps
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
    by_name = {row["method"]: row for row in rows}
    if "ours-eager" in by_name:
        ratio = by_name["ours"]["images_per_second"] / by_name["ours-eager"]["images_per_second"]
        recorded = "recorded" if info["cuda_graph"] else "NOT recorded (eager: see the warning above)"
        print(f"  CUDA graph ({recorded}): ours / ours-eager x{ratio:.2f}")
    if host_steps is not None:
        steps = ", ".join(f"{name} {ms:.1f}" for name, ms in host_steps.items())
        print(f"  host ms per image, one thread: {steps}; ours+write used {write_threads} writer threads")


if __name__ == "__main__":
    main()
