"""EfficientViT-SAM's image-encoder state-dict names and shapes, as its official code makes them.

Derived by reading mit-han-lab/efficientvit (``efficientvit/models/efficientvit/sam.py``:
``SamNeck``, ``EfficientViTSamImageEncoder``, ``efficientvit_sam_l1``; ``backbone.py``:
``EfficientViTLargeBackbone``, ``efficientvit_backbone_l1``; ``nn/ops.py``: ``ConvLayer``,
``ResBlock``, ``FusedMBConv``, ``MBConv``, ``LiteMLA``, ``EfficientViTBlock``,
``ResidualBlock``, ``DAGBlock``, ``OpSequential``) and restating that module structure here,
independently of odssam's and timm's modules. Importable as ``efficientvit_sam_layout`` from
every test; run it to regenerate the L1 fixture::

    python tests/efficientvit_sam_layout.py > tests/models/data/efficientvit_sam_l1_image_encoder.txt
"""

from __future__ import annotations

from pathlib import Path

import torch

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
Shape = tuple[int, ...]

# efficientvit_backbone_l1 + efficientvit_sam_l1's neck.
L1 = {"widths": (32, 64, 128, 256, 512), "depths": (1, 1, 1, 6, 6), "qkv_dim": 32, "neck_blocks": 8}
# The same structure at the size of odssam's efficientvit_tiny test backbone, one neck block.
TINY = {"widths": (8, 8, 16, 16, 32), "depths": (0, 1, 1, 1, 1), "qkv_dim": 8, "neck_blocks": 1}
# EfficientViTLargeBackbone's defaults: block type, expand ratio and "fewer norm" per stage.
BLOCKS, EXPANDS = ("res", "fmb", "fmb", "mb", "att"), (1, 4, 4, 4, 6)


def conv_layer(prefix: str, cin: int, cout: int, kernel=1, groups=1, bias=False, norm=True) -> list[tuple[str, Shape]]:
    """ConvLayer: ``conv`` (nn.Conv2d) then an optional ``norm`` (BatchNorm2d); act/dropout hold no weights."""
    rows = [(f"{prefix}.conv.weight", (cout, cin // groups, kernel, kernel))]
    if bias:
        rows.append((f"{prefix}.conv.bias", (cout,)))
    if norm:
        rows += [(f"{prefix}.norm.{name}", () if name == "num_batches_tracked" else (cout,)) for name in BN]
    return rows


def res_block(prefix: str, channels: int) -> list[tuple[str, Shape]]:
    """ResBlock (expand 1, full norms): conv1 3x3 + BN, conv2 3x3 + BN."""
    return conv_layer(f"{prefix}.conv1", channels, channels, 3) + conv_layer(f"{prefix}.conv2", channels, channels, 3)


def fused_mbconv(prefix: str, cin: int, cout: int, expand: float) -> list[tuple[str, Shape]]:
    """FusedMBConv (full norms): spatial_conv 3x3 cin->mid + BN, point_conv 1x1 mid->cout + BN."""
    mid = round(cin * expand)
    return conv_layer(f"{prefix}.spatial_conv", cin, mid, 3) + conv_layer(f"{prefix}.point_conv", mid, cout, 1)


def mbconv_fewer_norm(prefix: str, cin: int, cout: int, expand: float) -> list[tuple[str, Shape]]:
    """MBConv with use_bias (T, T, F) and norm (None, None, bn2d)."""
    mid = round(cin * expand)
    return (
        conv_layer(f"{prefix}.inverted_conv", cin, mid, 1, bias=True, norm=False)
        + conv_layer(f"{prefix}.depth_conv", mid, mid, 3, groups=mid, bias=True, norm=False)
        + conv_layer(f"{prefix}.point_conv", mid, cout, 1)
    )


def efficientvit_block(prefix: str, channels: int, dim: int, expand: float, scales=(5,)) -> list[tuple[str, Shape]]:
    """EfficientViTBlock: LiteMLA context module + MBConv local module, both residual."""
    heads = channels // dim
    total = heads * dim
    rows = conv_layer(f"{prefix}.context_module.main.qkv", channels, 3 * total, 1, norm=False)
    for index, scale in enumerate(scales):
        rows.append((f"{prefix}.context_module.main.aggreg.{index}.0.weight", (3 * total, 1, scale, scale)))
        rows.append((f"{prefix}.context_module.main.aggreg.{index}.1.weight", (3 * total, dim, 1, 1)))
    rows += conv_layer(f"{prefix}.context_module.main.proj", total * (1 + len(scales)), channels, 1)
    rows += mbconv_fewer_norm(f"{prefix}.local_module.main", channels, channels, expand)
    return rows


def backbone_keys(widths, depths, qkv_dim, prefix="image_encoder.backbone") -> list[tuple[str, Shape]]:
    """EfficientViTLargeBackbone: stage 0 = stem conv + ResBlocks; stages 1-4 = stride-2 block + blocks."""
    rows = conv_layer(f"{prefix}.stages.0.op_list.0", 3, widths[0], 3)
    for index in range(depths[0]):
        rows += res_block(f"{prefix}.stages.0.op_list.{index + 1}.main", widths[0])
    cin = widths[0]
    for stage in range(1, 5):
        width, block, op = widths[stage], BLOCKS[stage], f"{prefix}.stages.{stage}.op_list"
        # The stride-2 block: "fmb" stays, anything else becomes "mb"; expand ratio x4.
        if block == "fmb":
            rows += fused_mbconv(f"{op}.0.main", cin, width, EXPANDS[stage] * 4)
        else:
            rows += mbconv_fewer_norm(f"{op}.0.main", cin, width, EXPANDS[stage] * 4)
        for index in range(1, depths[stage] + 1):
            if block == "fmb":
                rows += fused_mbconv(f"{op}.{index}.main", width, width, EXPANDS[stage])
            elif block == "mb":
                rows += mbconv_fewer_norm(f"{op}.{index}.main", width, width, EXPANDS[stage])
            else:
                rows += efficientvit_block(f"{op}.{index}", width, qkv_dim, EXPANDS[stage])
        cin = width
    return rows


def neck_keys(in_channels, neck_blocks, head_width=256, out_dim=256, prefix="image_encoder.neck"):
    """SamNeck (DAGBlock): input_ops in fid_list order (coarsest first), middle FusedMBConv (expand 1), output conv."""
    rows = []
    for index, channels in enumerate(in_channels):
        rows += conv_layer(f"{prefix}.input_ops.{index}.op_list.0", channels, head_width, 1)
    for index in range(neck_blocks):
        rows += fused_mbconv(f"{prefix}.middle.op_list.{index}.main", head_width, head_width, 1)
    rows += conv_layer(f"{prefix}.output_ops.0.op_list.0", head_width, out_dim, 1, bias=True, norm=False)
    return rows


def image_encoder_keys(widths, depths, qkv_dim, neck_blocks) -> list[tuple[str, Shape]]:
    """Every tensor of ``EfficientViTSam.state_dict()`` under ``image_encoder.``, in order."""
    neck_inputs = (widths[4], widths[3], widths[2])  # fid_list = [stage4, stage3, stage2]
    return (
        backbone_keys(widths, depths, qkv_dim)
        + neck_keys(neck_inputs, neck_blocks)
        + [("image_encoder.norm.weight", (256,)), ("image_encoder.norm.bias", (256,))]
    )


# A few of the SAM prompt-encoder / mask-decoder entries an EfficientViT-SAM release also holds.
SAM_HEAD_KEYS = [
    ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", (2, 128)),
    ("prompt_encoder.no_mask_embed.weight", (1, 256)),
    ("mask_decoder.iou_token.weight", (1, 256)),
    ("mask_decoder.mask_tokens.weight", (4, 256)),
]


def random_state(keys: list[tuple[str, Shape]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors of the given names and shapes with tame random values (BN variances positive)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in keys:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif name.endswith(("norm.weight", "norm.bias", "running_mean")) or name.endswith(".bias"):
            state[name] = 0.1 * torch.randn(shape, generator=generator) + (1.0 if name.endswith("norm.weight") else 0.0)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            state[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state


def save_release_checkpoint(path: Path, layout: dict, seed: int = 0, nested: bool = True) -> dict[str, torch.Tensor]:
    """Write a synthetic EfficientViT-SAM release file (``{"state_dict": ...}``); return its state dict."""
    state = random_state(image_encoder_keys(**layout) + SAM_HEAD_KEYS, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state} if nested else state, path)
    return state


def read_fixture(path: Path) -> list[tuple[str, Shape]]:
    """Read a keys-and-shapes fixture written by :func:`main`."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split()
        rows.append((name, () if shape == "-" else tuple(int(size) for size in shape.split(","))))
    return rows


HEADER = """\
# EfficientViT-SAM-L1 image encoder: every tensor of its state dict as the official release names
# it (keys prefixed image_encoder., as in EfficientViTSam.state_dict()), one per line: name, then
# shape (comma-separated; - for a scalar). Generated by tests/efficientvit_sam_layout.py, which
# restates the module structure read from mit-han-lab/efficientvit (sam.py: SamNeck,
# EfficientViTSamImageEncoder, efficientvit_sam_l1; backbone.py: EfficientViTLargeBackbone L1;
# nn/ops.py: ConvLayer, ResBlock, FusedMBConv, MBConv, LiteMLA, EfficientViTBlock, ResidualBlock,
# DAGBlock, OpSequential), without using odssam's or timm's modules."""


def main() -> None:
    print(HEADER)
    for name, shape in image_encoder_keys(**L1):
        print(name, ",".join(str(size) for size in shape) or "-")


if __name__ == "__main__":
    main()
