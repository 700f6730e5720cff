"""Write the key names and shapes of EfficientViT-SAM-L1's image encoder, as its official code names them.

Derived by reading mit-han-lab/efficientvit (``efficientvit/models/efficientvit/sam.py``:
``SamNeck``, ``EfficientViTSamImageEncoder``, ``efficientvit_sam_l1``; ``backbone.py``:
``EfficientViTLargeBackbone``, ``efficientvit_backbone_l1``; ``nn/ops.py``: ``ConvLayer``,
``ResBlock``, ``FusedMBConv``, ``MBConv``, ``LiteMLA``, ``EfficientViTBlock``,
``ResidualBlock``, ``DAGBlock``, ``OpSequential``) and restating its module structure here,
independently of odssam's and timm's modules. Run it to regenerate the fixture::

    python tests/models/data/efficientvit_sam_keys.py > tests/models/data/efficientvit_sam_l1_image_encoder.txt
"""

from __future__ import annotations

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def conv_layer(prefix, cin, cout, kernel=1, groups=1, bias=False, norm=True):
    """ConvLayer: ``conv`` (nn.Conv2d) then an optional ``norm`` (BatchNorm2d); act/dropout have no weights."""
    rows = [(f"{prefix}.conv.weight", (cout, cin // groups, kernel, kernel))]
    if bias:
        rows.append((f"{prefix}.conv.bias", (cout,)))
    if norm:
        rows += [(f"{prefix}.norm.{name}", () if name == "num_batches_tracked" else (cout,)) for name in BN]
    return rows


def res_block(prefix, channels):
    """ResBlock (expand 1, full norms): conv1 3x3 + BN, conv2 3x3 + BN."""
    return conv_layer(f"{prefix}.conv1", channels, channels, 3) + conv_layer(f"{prefix}.conv2", channels, channels, 3)


def fused_mbconv(prefix, cin, cout, expand):
    """FusedMBConv (full norms): spatial_conv 3x3 cin->mid + BN, point_conv 1x1 mid->cout + BN."""
    mid = round(cin * expand)
    return conv_layer(f"{prefix}.spatial_conv", cin, mid, 3) + conv_layer(f"{prefix}.point_conv", mid, cout, 1)


def mbconv_fewer_norm(prefix, cin, cout, expand):
    """MBConv with use_bias (T, T, F) and norm (None, None, bn2d)."""
    mid = round(cin * expand)
    return (
        conv_layer(f"{prefix}.inverted_conv", cin, mid, 1, bias=True, norm=False)
        + conv_layer(f"{prefix}.depth_conv", mid, mid, 3, groups=mid, bias=True, norm=False)
        + conv_layer(f"{prefix}.point_conv", mid, cout, 1)
    )


def efficientvit_block(prefix, channels, dim=32, expand=6, scales=(5,)):
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


def l1_backbone(prefix="image_encoder.backbone"):
    """efficientvit_backbone_l1: widths 32-64-128-256-512, depths 1-1-1-6-6, blocks res/fmb/fmb/mb/att."""
    widths, depths = (32, 64, 128, 256, 512), (1, 1, 1, 6, 6)
    blocks, expands = ("res", "fmb", "fmb", "mb", "att"), (1, 4, 4, 4, 6)
    rows = conv_layer(f"{prefix}.stages.0.op_list.0", 3, widths[0], 3)
    for index in range(depths[0]):
        rows += res_block(f"{prefix}.stages.0.op_list.{index + 1}.main", widths[0])
    cin = widths[0]
    for stage in range(1, 5):
        width, block = widths[stage], blocks[stage]
        op = f"{prefix}.stages.{stage}.op_list"
        # The stride-2 block: "fmb" stays, anything else becomes "mb"; expand ratio x4.
        if block == "fmb":
            rows += fused_mbconv(f"{op}.0.main", cin, width, expands[stage] * 4)
        else:
            rows += mbconv_fewer_norm(f"{op}.0.main", cin, width, expands[stage] * 4)
        for index in range(1, depths[stage] + 1):
            if block == "fmb":
                rows += fused_mbconv(f"{op}.{index}.main", width, width, expands[stage])
            elif block == "mb":
                rows += mbconv_fewer_norm(f"{op}.{index}.main", width, width, expands[stage])
            else:
                rows += efficientvit_block(f"{op}.{index}", width, expand=expands[stage])
        cin = width
    return rows


def l1_neck(prefix="image_encoder.neck", head_depth=8, width=256):
    """SamNeck(fid_list=[stage4, stage3, stage2], in_channel_list=[512, 256, 128], head_depth 8, fmb, expand 1)."""
    rows = []
    for index, channels in enumerate((512, 256, 128)):
        rows += conv_layer(f"{prefix}.input_ops.{index}.op_list.0", channels, width, 1)
    for index in range(head_depth):
        rows += fused_mbconv(f"{prefix}.middle.op_list.{index}.main", width, width, 1)
    rows += conv_layer(f"{prefix}.output_ops.0.op_list.0", width, 256, 1, bias=True, norm=False)
    return rows


HEADER = """\
# EfficientViT-SAM-L1 image encoder: every tensor of its state dict as the official release names
# it (keys prefixed image_encoder., as in EfficientViTSam.state_dict()), one per line: name, then
# shape (comma-separated; - for a scalar). Generated by tests/models/data/efficientvit_sam_keys.py,
# which restates the module structure read from mit-han-lab/efficientvit (sam.py: SamNeck,
# EfficientViTSamImageEncoder, efficientvit_sam_l1; backbone.py: EfficientViTLargeBackbone L1;
# nn/ops.py: ConvLayer, ResBlock, FusedMBConv, MBConv, LiteMLA, EfficientViTBlock, ResidualBlock,
# DAGBlock, OpSequential), without using odssam's or timm's modules."""


def main() -> None:
    print(HEADER)
    rows = l1_backbone() + l1_neck() + [("image_encoder.norm.weight", (256,)), ("image_encoder.norm.bias", (256,))]
    for name, shape in rows:
        print(name, ",".join(str(size) for size in shape) or "-")


if __name__ == "__main__":
    main()
