"""Parameters and FLOPs of ODS-SAM's parts (the paper's Table 7).

Counting convention:
    * FLOPs = 2 x multiply-accumulates of convolutions, linear layers and matrix
      products, as counted by ``torch.utils.flop_counter`` on one image; element-wise
      operations (norms, activations, softmax) are not counted, as in fvcore/thop.
    * The selective scan is invisible to such counters: its analytic cost,
      9 x L x D x N per direction and image (Mamba's count), is added and also shown
      on its own.
    * The frozen segmenter is profiled through its seam (:class:`~odssam.models.segmenter.FrozenSegmenter`):
      one ``encode`` of an image and one ``decode`` of its embedding parts with a dense
      prompt. Each of its components (SAM: ``sam.image_encoder``, ``sam.mask_decoder``,
      ``sam.prompt_encoder``) gets the FLOPs of the calls into it (SAM's prompt encoder: the
      dense positional encoding its decoder reads), so any registered segmenter profiles
      without code here.
    * A model without a frozen segmenter (the ``unet`` baseline) is all learnable: its
      trainable module is profiled on one image of its input size, by child module.
Models are built through the registry (random weights, the official modules rather than the
fused encoder) on data-less tensors (:func:`odssam.models.shape_only.shape_only`), so
profiling ViT-H costs no memory or time.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from unittest import mock

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from odssam.config import ModelConfig
from odssam.models import od_ssm
from odssam.models.registry import build_model
from odssam.models.segmenter import FrozenSegmenter
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


def profile_prompt_encoder(encoder: nn.Module, cfg: ModelConfig) -> PartProfile:
    """Profile the learnable prompt encoder on one image of ``cfg.prompt_encoder.input_size``.

    Call inside :func:`~odssam.models.shape_only.shape_only` with a shape-only ``encoder``.
    """
    pcfg = cfg.prompt_encoder
    with _scan_not_counted():
        x = torch.empty(1, 3, pcfg.input_size, pcfg.input_size)
        total, per_module = _flops_by_module(encoder, x)
    grid = pcfg.input_size // 8
    scan = 0
    if pcfg.use_ssm and any(isinstance(module, od_ssm.SS2D) for module in encoder.modules()):  # not in baselines
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


class _EncodeThenDecode(nn.Module):
    """One image through the segmenter's seam; a module, so the FLOP counter names its components."""

    def __init__(self, segmenter: FrozenSegmenter):
        super().__init__()
        self.segmenter = segmenter

    def forward(self, x: torch.Tensor, embedding: tuple[torch.Tensor, ...], dense_prompt: torch.Tensor) -> None:
        self.segmenter.encode(x)
        self.segmenter.decode(embedding, dense_prompt)


def segmenter_components(segmenter: FrozenSegmenter) -> tuple[str, dict[str, nn.Module]]:
    """``(path, children)`` of the first module inside the segmenter that has several children.

    SAM: ``SamSegmenter`` holds one ``Sam``, so ``("sam", {"image_encoder": ...,
    "prompt_encoder": ..., "mask_decoder": ...})``; the path is ``""`` for the segmenter itself.
    """
    path, container = "", segmenter
    while len(children := dict(container.named_children())) == 1 and not _own_parameter_count(container):
        ((name, child),) = children.items()
        if not any(True for _ in child.children()):
            break  # a single leaf is the one component
        path, container = (f"{path}.{name}" if path else name), child
    return path, children


def _own_parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _flops_inside(per_module: dict[str, int], name: str) -> int:
    """FLOPs run inside ``name``, or inside its descendants when called from elsewhere (counted once)."""
    inside = [key for key in per_module if key == name or key.startswith(name + ".")]
    outermost = [key for key in inside if not any(key.startswith(other + ".") for other in inside)]
    return sum(per_module[key] for key in outermost)


def profile_segmenter(segmenter: FrozenSegmenter) -> list[PartProfile]:
    """Profile a frozen segmenter on one image: one ``encode`` and one ``decode``, largest FLOPs first.

    Call inside :func:`~odssam.models.shape_only.shape_only` with a shape-only ``segmenter``.
    The decoder is fed data-less embedding parts of :meth:`FrozenSegmenter.embedding_shapes
    <odssam.models.segmenter.FrozenSegmenter.embedding_shapes>` and a dense prompt
    1x256xhxw. Parts are the components of :func:`segmenter_components`; parameters held by
    their parent itself and FLOPs outside every component (functional code in ``decode``)
    form parts of their own, shown only when there are any.
    """
    size, grid = segmenter.image_size, segmenter.embedding_size
    x = torch.empty(1, 3, size, size)
    embedding = tuple(torch.empty(1, *shape) for shape in segmenter.embedding_shapes())
    dense_prompt = torch.empty(1, segmenter.prompt_channels, grid, grid)
    total, per_module = _flops_by_module(_EncodeThenDecode(segmenter), x, embedding, dense_prompt)
    path, children = segmenter_components(segmenter)
    prefix = f"{path}." if path else ""
    root = f"{_EncodeThenDecode.__name__}.segmenter.{prefix}"
    parts = [
        PartProfile(prefix + name, _count(child), False, _flops_inside(per_module, root + name))
        for name, child in children.items()
    ]
    container = segmenter.get_submodule(path)
    if own := _own_parameter_count(container):
        parts.append(PartProfile(f"{path or 'segmenter'} (own parameters)", own, False, 0))
    if outside := total - sum(part.flops for part in parts):
        parts.append(PartProfile("outside the components", 0, False, outside))
    return sorted(parts, key=lambda part: part.flops, reverse=True)


def shape_only_config(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with random frozen weights and the official encoder modules (nothing to load)."""
    return dataclasses.replace(cfg, sam=dataclasses.replace(cfg.sam, checkpoint=None, fast_encoder=False))


def profile_trainable(model: nn.Module, name: str) -> PartProfile:
    """Profile a model without a frozen segmenter: its trainable module on one image of its input size.

    Call inside :func:`~odssam.models.shape_only.shape_only` with a shape-only ``model``.
    """
    trainable, size = model.trainable, model.image_size
    total, per_module = _flops_by_module(trainable, torch.empty(1, 3, size, size))
    root = type(trainable).__name__
    children = [
        PartProfile(child_name, _count(child), True, per_module.get(f"{root}.{child_name}", 0))
        for child_name, child in trainable.named_children()
    ]
    return PartProfile(name, _count(trainable), True, total, 0, children)


def profile_model(cfg: ModelConfig | None = None) -> dict:
    """Parameters and FLOPs of every part, as a JSON-ready dict."""
    cfg = cfg or ModelConfig()
    with shape_only():
        model = build_model(shape_only_config(cfg), feature_encoder_weights=False)
        if model.segmenter is None:
            learnable = profile_trainable(model, cfg.name)
            return {
                "convention": CONVENTION,
                "model": cfg.name,
                "input_size": model.image_size,
                "learnable": learnable.to_dict(),
                "frozen": [],
            }
        prompt = profile_prompt_encoder(model.trainable, cfg)
        frozen = profile_segmenter(model.segmenter)
    return {
        "convention": CONVENTION,
        "model": cfg.name,
        "sam_variant": cfg.sam.variant,
        "sam_image_size": cfg.sam.image_size,
        "prompt_input_size": cfg.prompt_encoder.input_size,
        "learnable": prompt.to_dict(),
        "frozen": [p.to_dict() for p in frozen],
    }


def format_profile(report: dict) -> str:
    """Plain-text table of :func:`profile_model`'s report."""
    if "sam_variant" in report:
        title = (
            f"ODS-SAM profile: SAM {report['sam_variant']} at {report['sam_image_size']}, "
            f"prompt encoder at {report['prompt_input_size']}"
        )
    else:
        title = f"{report['model']} profile: no frozen segmenter, input at {report['input_size']}"
    lines = [
        title,
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
    lines.append("frozen" if report["frozen"] else "frozen: none")
    for part in report["frozen"]:
        row(part, 2)
    lines.append("-" * 73)
    lines.append(report["convention"])
    return "\n".join(lines)
