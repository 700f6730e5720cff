"""``odssam predict``: masks, probability maps, overlays and a CSV for any images.

::

    odssam predict --checkpoint runs/demo/last.pt photos/ extra/*.jpg --output predictions

Writes ``masks/``, ``probabilities/``, ``overlays/`` and ``predictions.csv`` under the
output folder (see :mod:`odssam.inference.io`). Files that cannot be read are reported
and skipped; the exit code is then 1 (0 when every image was predicted, 2 when none was).
"""

from __future__ import annotations

import sys
import time

from odssam.cli.common import (
    add_command_parser,
    add_no_progress_argument,
    add_num_workers_argument,
    add_output_argument,
    examples,
)
from odssam.errors import OdsSamError


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "predict",
        help="predict anomaly masks for image files, folders or glob patterns",
        description=(
            "Predict anomaly masks with a trained checkpoint. Writes per image a binary mask (PNG), a "
            "probability map (8-bit PNG or float32 .npy) and an overlay (PNG), all at the original size, "
            "plus predictions.csv (max score and anomalous area fraction per image). Unreadable files are "
            "reported and skipped (exit code 1; 2 if no image could be read)."
        ),
        epilog=examples(
            "odssam predict --checkpoint odssam-demo/run/last.pt odssam-demo/data/fabric/test --recursive "
            "--output predictions",
            "odssam predict --checkpoint runs/kvasir/last.pt photos/ 'extra/*.jpg' --output out --device cpu",
            "odssam predict --checkpoint runs/kvasir/last.pt scans/ --output out --probability-format npy --no-overlay",
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--checkpoint", required=True, help="odssam training checkpoint (best.pt / last.pt)")
    add_output_argument(parser, "output folder (created)", required=True)
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--device", default="auto", help="auto (GPU if available), cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "bf16", "fp32"), help="auto: bf16 on GPU, fp32 on CPU"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="probability above which a pixel is anomalous")
    parser.add_argument(
        "--probability-format", default="png", choices=("png", "npy", "none"),
        help="probability maps as 8-bit PNG (default), float32 .npy, or not at all",
    )
    parser.add_argument("--no-overlay", action="store_true", help="do not write overlays")
    parser.add_argument("--recursive", action="store_true", help="also take images in sub-folders of INPUT folders")
    add_num_workers_argument(parser, "image decoding threads (default: up to 8 with a GPU, 2 on the CPU)")
    parser.add_argument("--sam-checkpoint", help="SAM weights, if the path stored in the checkpoint is not valid here")
    parser.add_argument(
        "--no-cuda-graph", dest="cuda_graph", action="store_false",
        help="run the model eagerly on a GPU (default: the model's forward is recorded once as a CUDA graph "
        "and replayed for every full batch; same maps, fewer kernel launches by the host)",
    )
    add_no_progress_argument(parser)
    parser.set_defaults(func=run)


def _report(message: str) -> None:
    """Print to stderr without tearing the progress bar."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(message, file=sys.stderr)
    else:
        tqdm.write(message, file=sys.stderr)


class _Clock:
    """When the steps of a prediction run ended: model loaded, first batch handed over, all written.

    The first batch carries the one-off costs (CUDA context, kernel selection, allocator
    warm-up), so the steady rate is counted from its end.
    """

    def __init__(self, first_batch: int):
        self.start = time.perf_counter()
        self.first_batch = first_batch
        self.loaded = self.first_done = self.end = self.start
        self.received = self.done = self.done_at_first = 0

    def model_loaded(self) -> None:
        self.loaded = time.perf_counter()

    def result(self, ok: bool) -> None:
        """One more result handed over (``ok``: predicted; else an unreadable file)."""
        self.received += 1
        self.done += ok
        if self.received == self.first_batch:
            self.first_done, self.done_at_first = time.perf_counter(), self.done

    def finished(self) -> None:
        self.end = time.perf_counter()
        if self.received < self.first_batch:  # fewer images than one batch: all of it was start-up
            self.first_done = self.end

    def summary(self) -> str:
        """e.g. ``900 images predicted in 14.2 s (63.38 img/s): start-up 4.1 s (model load 2.0 s, first
        batch 2.1 s), then 89.3 img/s``."""
        done, total = self.done, self.end - self.start
        line = f"{done} images predicted in {total:.1f} s ({done / max(total, 1e-9):.2f} img/s)"
        line += (
            f": start-up {self.first_done - self.start:.1f} s (model load {self.loaded - self.start:.1f} s, "
            f"first batch {self.first_done - self.loaded:.1f} s)"
        )
        steady = done - self.done_at_first
        if steady > 0 and self.end > self.first_done:
            line += f", then {steady / (self.end - self.first_done):.1f} img/s"
        return line


def run(args) -> int:
    from odssam.inference import PredictionWriter, Predictor, expand_inputs
    from odssam.utils.atomic import check_writable_folder

    if args.batch_size < 1:
        raise OdsSamError(f"--batch-size must be at least 1, got {args.batch_size}")
    inputs = expand_inputs(args.inputs, recursive=args.recursive)
    check_writable_folder(args.output)
    clock = _Clock(first_batch=min(args.batch_size, len(inputs)))
    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        args.device,
        sam_checkpoint=args.sam_checkpoint,
        threshold=args.threshold,
        precision=args.precision,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cuda_graph=args.cuda_graph,
    )
    clock.model_loaded()
    precision = "bf16" if predictor.amp_dtype is not None else "fp32"
    graph = ", CUDA graph" if predictor.inference.graphed_forward is not None else ""
    print(f"predicting {len(inputs)} images on {predictor.device} ({precision}, batch {args.batch_size}{graph})")
    skipped = []
    writer = PredictionWriter(args.output, probability_format=args.probability_format, overlays=not args.no_overlay)
    with writer:
        stream = predictor.predict_stream(
            inputs, keep_images=not args.no_overlay, progress=not args.no_progress, total=len(inputs)
        )
        for result in stream:
            if result.ok:
                writer.submit(result.prediction, result.image)
            else:
                skipped.append(result)
                _report(f"skipped: {result.error}")
            clock.result(result.ok)
    clock.finished()
    done = len(inputs) - len(skipped)
    print(f"{clock.summary()}; outputs in {args.output}")
    print(f"table: {writer.csv_path}")
    if skipped:
        print(f"{len(skipped)} of {len(inputs)} files could not be read and were skipped", file=sys.stderr)
        return 2 if done == 0 else 1  # as metrics: 2 when nothing at all could be processed
    return 0
