"""Where a prediction batch's time goes: ``torch.profiler`` over ``odssam predict``'s own path.

Loads an odssam checkpoint (or builds the paper model with random weights), predicts a
folder of images through :class:`~odssam.inference.Predictor` and the
:class:`~odssam.inference.PredictionWriter` exactly as ``odssam predict`` does, after one
untimed warm-up pass over the first batches, and prints the costliest device kernels and
host operations of the profiled pass, with its wall time.

    python benchmarks/profile_predict.py Kvasir-SEG/images --checkpoint runs/kvasir/last.pt --images 96
    python benchmarks/profile_predict.py photos/        # CPU: the tiny config with random weights
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from odssam.inference import PredictionWriter, Predictor, expand_inputs

ROOT = Path(__file__).resolve().parents[1]


def build_predictor(args) -> Predictor:
    if args.checkpoint:
        return Predictor.from_checkpoint(args.checkpoint, args.device, batch_size=args.batch_size)
    from odssam.config import load_config
    from odssam.models.registry import build_model

    config = load_config(ROOT / "configs" / ("kvasir.yaml" if torch.cuda.is_available() else "tiny.yaml"))
    model = build_model(config.model, checkpoint=None, feature_encoder_weights=False)  # random weights
    return Predictor(model, device=args.device, batch_size=args.batch_size, config=config)


def run_pass(predictor: Predictor, inputs, output: Path, write: bool) -> float:
    begin = time.perf_counter()
    writer = PredictionWriter(output) if write else None
    for result in predictor.predict_stream(inputs, keep_images=write):
        if writer is not None and result.ok:
            writer.submit(result.prediction, result.image)
    if writer is not None:
        writer.close()
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="images to predict (a folder, files or a pattern)")
    parser.add_argument("--checkpoint", default=None, help="odssam checkpoint (default: random-weight model)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--images", type=int, default=64, help="images in the profiled pass")
    parser.add_argument("--no-write", action="store_true", help="leave out the writing of masks, maps and overlays")
    parser.add_argument("--top", type=int, default=25, help="rows of each table")
    args = parser.parse_args()

    inputs = expand_inputs([args.folder])
    predictor = build_predictor(args)
    write = not args.no_write
    with tempfile.TemporaryDirectory(prefix="profile-predict-") as scratch:
        warm = run_pass(predictor, inputs[: 2 * args.batch_size], Path(scratch) / "warm", write)
        print(f"warm-up: {2 * args.batch_size} images in {warm:.2f} s")
        timed = inputs[: args.images]
        plain = run_pass(predictor, timed, Path(scratch) / "plain", write)
        print(f"unprofiled: {len(timed)} images in {plain:.2f} s ({len(timed) / plain:.1f} img/s, writing {write})")
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if predictor.device.type == "cuda" else [])
        with profile(activities=activities) as profiler:
            seconds = run_pass(predictor, timed, Path(scratch) / "profiled", write)
    print(f"profiled: {len(timed)} images in {seconds:.2f} s")
    table = profiler.key_averages()
    if predictor.device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=args.top, max_name_column_width=60))
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=60))


if __name__ == "__main__":
    main()
