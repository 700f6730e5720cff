"""Parameters and FLOPs of ODS-SAM's parts (the paper's Table 7).

Counting convention:
    * FLOPs = 2 x multiply-accumulates of convolutions, linear layers and matrix
      products, as counted by ``torch.utils.flop_counter`` on one image; element-wise
      operations (norms, activations, softmax) are not counted, as in fvcore/thop.
    * The selective scan is invisible to such counters: its analytic cost,
      9 x L x D x N per direction and image (Mamba's count), is added and also shown
      on its own.
Models are built and run on data-less tensors (:func:`odssam.models.shape_only.shape_only`),
so profiling ViT-H costs no memory or time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

from odssam.config import ModelConfig
from odssam.models import od_ssm
from odssam.models.prompt_encoder import build_prompt_encoder
from odssam.models.sam import build_sam
from odssam.models.shape_only import shape_only

CONVENTION = (
    "FLOPs = 2 x MACs of conv/linear/matmul for one image (element-wise ops not counted); "
    "selective scan added analytically as 9*L*D*N per direction"
)


@dataclass
class PartProfile:
    name: str
    params: int
    trainable: bool
    flops: int = 0
    scan_flops: int = 0
    children: list[PartProfile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "params": self.params,
            "trainable": self.trainable,
            "flops": self.flops,
            "scan_flops": self.scan_flops,
            "children": [c.to_dict() for c in self.children],
        }


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _shape_only_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **_):
    # Stands in for the scan while counting: same output shape, no counted ops.
    return torch.empty_like(u)


@contextlib.contextmanager
def _scan_not_counted():
    with mock.patch.object(od_ssm, "selective_scan", _shape_only_scan):
        yield


def _flops_by_module(model: torch.nn.Module, *inputs) -> tuple[int, dict[str, int]]:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*inputs)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return counter.get_total_flops(), per_module


def profile_prompt_encoder(cfg: ModelConfig) -> PartProfile:
    """Profile the learnable prompt encoder on one image of ``cfg.prompt_encoder.input_size``."""
    pcfg = cfg.prompt_encoder
    with shape_only(), _scan_not_counted():
        encoder = build_prompt_encoder(pcfg)
        x = torch.empty(1, 3, pcfg.input_size, pcfg.input_size)
        total, per_module = _flops_by_module(encoder, x)
    grid = pcfg.input_size // 8
    scan = 0
    if pcfg.use_ssm:
        scan = pcfg.ssm.num_layers * od_ssm.ss2d_scan_flops(1, grid, grid, pcfg.ssm, d_model=pcfg.feature_encoder.out_channels)
    root = type(encoder).__name__
    children = []
    for name, child in encoder.named_children():
        child_flops = per_module.get(f"{root}.{name}", 0)
        child_scan = scan if name == "ssmodc" else 0
        part = PartProfile(name, _count(child), True, child_flops + child_scan, child_scan)
        if name == "ssmodc":
            for sub_name, sub in child.named_children():
                sub_flops = per_module.get(f"{root}.{name}.{sub_name}", 0)
                sub_scan = scan if "ssm" in sub_name else 0
                part.children.append(PartProfile(sub_name, _count(sub), True, sub_flops + sub_scan, sub_scan))
        children.append(part)
    return PartProfile("prompt_encoder", _count(encoder), True, total + scan, scan, children)


def profile_sam(cfg: ModelConfig) -> list[PartProfile]:
    """Profile the frozen SAM parts on one padded image (data-less tensors)."""
    size = cfg.sam.image_size
    grid = size // 16
    with shape_only():
        sam = build_sam(cfg.sam.variant, checkpoint=None, image_size=size)
        encoder_flops, _ = _flops_by_module(sam.image_encoder, torch.empty(1, 3, size, size))
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            sam.mask_decoder(
                image_embeddings=torch.empty(1, 256, grid, grid),
                image_pe=torch.empty(1, 256, grid, grid),
                sparse_prompt_embeddings=torch.empty(1, 0, 256),
                dense_prompt_embeddings=torch.empty(1, 256, grid, grid),
                multimask_output=False,
            )
    return [
        PartProfile("sam.image_encoder", _count(sam.image_encoder), False, encoder_flops),
        PartProfile("sam.mask_decoder", _count(sam.mask_decoder), False, counter.get_total_flops()),
        PartProfile("sam.prompt_encoder", _count(sam.prompt_encoder), False, 0),
    ]


def profile_model(cfg: ModelConfig | None = None) -> dict:
    """Parameters and FLOPs of every part, as a JSON-ready dict."""
    cfg = cfg or ModelConfig()
    prompt = profile_prompt_encoder(cfg)
    frozen = profile_sam(cfg)
    return {
        "convention": CONVENTION,
        "sam_variant": cfg.sam.variant,
        "sam_image_size": cfg.sam.image_size,
        "prompt_input_size": cfg.prompt_encoder.input_size,
        "learnable": prompt.to_dict(),
        "frozen": [p.to_dict() for p in frozen],
    }


def format_profile(report: dict) -> str:
    """Plain-text table of :func:`profile_model`'s report."""
    lines = [
        f"ODS-SAM profile: SAM {report['sam_variant']} at {report['sam_image_size']}, "
        f"prompt encoder at {report['prompt_input_size']}",
        f"{'part':<34}{'params (M)':>12}{'GFLOPs':>12}{'of which scan':>15}",
        "-" * 73,
    ]

    def row(part: dict, indent: int) -> None:
        name = " " * indent + part["name"]
        scan = f"{part['scan_flops'] / 1e9:.3f}" if part["scan_flops"] else ""
        lines.append(f"{name:<34}{part['params'] / 1e6:>12.3f}{part['flops'] / 1e9:>12.3f}{scan:>15}")
        for child in part["children"]:
            row(child, indent + 2)

    lines.append("learnable")
    row(report["learnable"], 2)
    lines.append("frozen")
    for part in report["frozen"]:
        row(part, 2)
    lines.append("-" * 73)
    lines.append(report["convention"])
    return "\n".join(lines)
