"""``odssam export``: ONNX graphs of a trained model, checked against PyTorch with onnxruntime.

::

    odssam export --checkpoint runs/demo/last.pt --output exported

Writes ``image_encoder.onnx``, ``prompt_decoder.onnx`` and ``odssam_onnx.json`` (see
:mod:`odssam.export.onnx_export`); prints the parity figures.
"""

from __future__ import annotations

from odssam.cli.common import add_command_parser, add_output_argument, examples
from odssam.errors import OdsSamError
from odssam.utils.atomic import check_writable_folder


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "export",
        help="export a trained model to ONNX (image encoder + prompt encoder/mask decoder)",
        description=(
            "Export two ONNX graphs with a dynamic batch axis: the SAM image encoder (image -> "
            "image_embedding) and the prompt encoder + mask decoder ((image, image_embedding) -> logits), "
            "then run both in onnxruntime and report the largest difference from PyTorch."
        ),
        epilog=examples(
            "odssam export --checkpoint odssam-demo/run/last.pt --output exported",
            "odssam export --checkpoint runs/kvasir/last.pt --output exported --opset 18 --no-check",
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="odssam training checkpoint (best.pt / last.pt)")
    add_output_argument(parser, "output folder (created)", required=True)
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--threshold", type=float, default=0.5, help="mask threshold recorded for runtimes")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    parser.add_argument("--parity-batch", type=int, default=2, help="images in the parity check (default 2)")
    parser.add_argument("--sam-checkpoint", help="SAM weights, if the path stored in the checkpoint is not valid here")
    parser.set_defaults(func=run)


def run(args) -> int:
    from odssam.checkpoint import load_model_from_checkpoint
    from odssam.export.onnx_export import export_onnx

    if not 11 <= args.opset <= 20:
        raise OdsSamError(f"--opset must lie in 11..20 (the selective scan needs CumSum, opset 11), got {args.opset}")
    if args.parity_batch < 1:
        raise OdsSamError(f"--parity-batch must be at least 1, got {args.parity_batch}")
    check_writable_folder(args.output)
    model, cfg = load_model_from_checkpoint(args.checkpoint, device="cpu", sam_checkpoint=args.sam_checkpoint)
    frozen = f"SAM {cfg.model.sam.variant}" if model.segmenter is not None else f"{cfg.model.name}, no SAM: one graph"
    print(f"exporting {args.checkpoint} ({frozen} at {model.image_size}px) to {args.output}")
    result = export_onnx(
        model,
        args.output,
        opset=args.opset,
        check=not args.no_check,
        parity_batch=args.parity_batch,
        threshold=args.threshold,
        source=str(args.checkpoint),
    )
    for path in result.files:
        print(f"  {path}")
    if result.parity is not None:
        parity = result.parity
        low, high = parity.logit_range
        parts = ""
        if parity.max_abs_diff_embedding is not None:
            parts = f"; embedding {parity.max_abs_diff_embedding:.3g}, decoder alone {parity.max_abs_diff_decoder:.3g}"
        print(
            f"onnxruntime parity at batch {parity.batch_size}: max |logits difference| "
            f"{parity.max_abs_diff_logits:.3g} (logits span {low:.3g} .. {high:.3g}){parts}"
        )
    return 0
