"""``odssam forward``: build the model and run one forward pass, printing mask statistics.

A smoke test of an installation or a config: with no ``--image`` it uses a generated
image (a textured surface with a drawn defect).
"""

from __future__ import annotations

import time

import numpy as np

from odssam.cli.common import add_command_parser, add_config_arguments, config_from_args, examples


def add_parser(subparsers) -> None:
    parser = add_command_parser(
        subparsers,
        "forward",
        help="build the model and run one forward pass on an image (installation check)",
        description="Build the model of a config and run one forward pass, printing the probability map's "
        "statistics and the time taken. Without --image it uses a generated image.",
        epilog=examples(
            "odssam forward --config configs/tiny.yaml --device cpu",
            "odssam forward --config configs/kvasir.yaml --set model.sam.checkpoint=sam_vit_h_4b8939.pth "
            "--image photo.png",
        ),
    )
    add_config_arguments(parser)
    parser.add_argument("--image", help="image file (default: a generated 300x400 image)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.set_defaults(func=run)


def generated_image(height: int = 300, width: int = 400, seed: int = 0) -> np.ndarray:
    """A grey textured surface with a dark elliptic defect: HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    image = 128 + 20 * rng.standard_normal((height, width, 1))
    yy, xx = np.mgrid[:height, :width]
    defect = ((yy - height * 0.4) / (height * 0.12)) ** 2 + ((xx - width * 0.6) / (width * 0.08)) ** 2 < 1
    image[defect] -= 70
    return np.clip(np.repeat(image, 3, axis=2), 0, 255).astype(np.uint8)


def run(args) -> int:
    import torch

    from odssam.data.image_io import read_image
    from odssam.errors import OdsSamError
    from odssam.inference.batch import predict_probabilities
    from odssam.models.random_weights import warn_random_weights
    from odssam.models.registry import build_model

    cfg = config_from_args(args)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    image = read_image(args.image) if args.image else generated_image()
    start = time.perf_counter()
    model = build_model(cfg.model).to(device).eval()
    warn_random_weights(model, cfg.model, trained=False)
    built = time.perf_counter()
    problem = model.preprocess_spec.size_problem(*image.shape[:2])
    if problem is not None:
        raise OdsSamError(f"{args.image}: {problem}")
    prob = predict_probabilities(model, [image])[0]
    done = time.perf_counter()
    if model.segmenter is None:  # a baseline without SAM
        print(f"{cfg.model.name} (no SAM) starts from: {model.trainable.weights_description}")
    else:
        weights = cfg.model.sam.checkpoint or "random weights (no checkpoint: the mask is not meaningful)"
        print(f"SAM {cfg.model.sam.variant}: {weights}")
        print(f"feature encoder starts from: {model.trainable.weights_description}")
    learnable = sum(p.numel() for p in model.trainable_parameters())
    print(f"model {cfg.model.name}: {type(model.trainable).__name__}, {learnable / 1e6:.3f} M learnable parameters")
    print(f"input {image.shape[1]}x{image.shape[0]} -> probability map {prob.shape[1]}x{prob.shape[0]}")
    print(
        f"probability min {prob.min():.4f} mean {prob.mean():.4f} max {prob.max():.4f}; "
        f"mask (p > 0.5) covers {100 * (prob > 0.5).mean():.2f} % of the image"
    )
    print(f"build {built - start:.1f} s, forward {done - built:.1f} s on {device}")
    return 0
