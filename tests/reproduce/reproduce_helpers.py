"""Shared helpers of the ``odssam reproduce`` tests."""

from __future__ import annotations

# configs/tiny.yaml's model (and a small, fast recipe) as --set overrides for every run.
TINY_OVERRIDES = [
    "model.sam.variant=vit_micro",
    "model.sam.checkpoint=null",
    "model.sam.image_size=256",
    "model.prompt_encoder.input_size=64",
    "model.prompt_encoder.feature_encoder.backbone=efficientvit_tiny",
    "model.prompt_encoder.feature_encoder.neck_blocks=1",
    "model.prompt_encoder.feature_encoder.checkpoint=null",
    "model.prompt_encoder.ssm.scan_backend=chunked",
    "model.prompt_encoder.ssm.chunk_size=16",
    "model.prompt_encoder.ssm.d_state=4",
    "model.prompt_encoder.ssm.dt_rank=4",
    "model.prompt_encoder.ssm.expand=1",
    "model.prompt_encoder.odconv.kernel_num=4",
    "data.val_count=0",
    "data.num_workers=0",
    "data.image_size=32",
    "train.epochs=1",
    "train.batch_size=2",
    "train.precision=fp32",
]


def set_arguments(overrides: list[str]) -> list[str]:
    """``["--set", o1, "--set", o2, ...]``."""
    return [part for override in overrides for part in ("--set", override)]
