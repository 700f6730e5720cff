"""Tests of odssam.models.fast_encoder against the official segment_anything encoder."""

from __future__ import annotations

import functools
import textwrap

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import get_rel_pos

from odssam.models import fast_encoder
from odssam.models.fast_encoder import (
    FastImageEncoderViT,
    accelerate_image_encoder,
    maybe_accelerate_image_encoder,
    relative_position_table,
    resolve_backend,
)

from helpers import run_in_triton_interpreter


def tiny_encoder(img_size: int = 256, window_size: int = 14, embed_dim: int = 64, num_heads: int = 2,
                 seed: int = 0) -> ImageEncoderViT:
    """Official encoder, 2 blocks (block 0 windowed, block 1 global), random position tables."""
    torch.manual_seed(seed)
    encoder = ImageEncoderViT(
        img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=2, num_heads=num_heads,
        out_chans=32, use_rel_pos=True, window_size=window_size, global_attn_indexes=(1,),
    )
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                param.normal_(0.0, 0.5)  # SAM zero-initialises these; make them matter
    return encoder.eval()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_state_dict_keys_and_storage_are_the_official_ones():
    encoder = tiny_encoder()
    fast = FastImageEncoderViT(encoder)
    official, ours = encoder.state_dict(), fast.state_dict()
    assert list(ours) == list(official)
    assert all(ours[key].data_ptr() == official[key].data_ptr() for key in official)
    assert fast.img_size == encoder.img_size


def test_official_checkpoint_loads_strictly():
    source = tiny_encoder(seed=1)
    fast = FastImageEncoderViT(tiny_encoder(seed=2), backend="torch")
    fast.load_state_dict(source.state_dict(), strict=True)
    images = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.allclose(fast(images), source(images), atol=1e-4)


@pytest.mark.parametrize(
    ("img_size", "window_size", "embed_dim", "num_heads"),
    [
        (256, 14, 64, 2),  # 16x16 tokens: windows padded to 28x28 (three partly padded windows)
        (224, 14, 64, 2),  # 14x14 tokens: exactly one window, no padding
        (192, 5, 96, 3),  # 12x12 tokens, window 5 -> 15x15, head dim 32
    ],
)
def test_torch_backend_matches_official_encoder(img_size, window_size, embed_dim, num_heads):
    encoder = tiny_encoder(img_size, window_size, embed_dim, num_heads)
    fast = FastImageEncoderViT(encoder, backend="torch")
    images = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        expected = encoder(images)
        got = fast(images)
    assert got.shape == expected.shape == (2, 32, img_size // 16, img_size // 16)
    assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "mask"])
@pytest.mark.parametrize("block_index", [0, 1], ids=["windowed", "global"])
def test_each_block_kind_matches_official(block_index, fold, monkeypatch):
    attention = fast_encoder._attention_torch
    monkeypatch.setattr(fast_encoder, "_attention_torch", functools.partial(attention, fold=fold))
    encoder = tiny_encoder()
    block = encoder.blocks[block_index]
    assert (block.window_size > 0) == (block_index == 0)
    tokens = torch.randn(2, 16, 16, 64)
    with torch.no_grad():
        expected = block(tokens)
        got = fast_encoder._block_forward(block, tokens, "torch")
    assert (got - expected).abs().max().item() < 1e-4
    # The check is not vacuous: the relative positions and the padded keys change the result.
    with torch.no_grad():
        block.attn.rel_pos_w.add_(torch.randn_like(block.attn.rel_pos_w))
        assert (fast_encoder._block_forward(block, tokens, "torch") - expected).abs().max().item() > 1e-2


def test_padded_window_keys_are_the_qkv_bias():
    """A padded token is zero after the norm, so it attends as the qkv bias: zeroing the bias
    must change the output of a padded window but not of an unpadded one."""
    encoder = tiny_encoder()
    block = encoder.blocks[0]
    qkv = torch.randn(1, 16, 16, 3 * 64)
    args = (qkv, 2, 14, block.attn.rel_pos_h.detach(), block.attn.rel_pos_w.detach())
    scale = block.attn.scale
    with_bias = fast_encoder._attention_torch(*args, torch.randn(3 * 64), scale)
    without = fast_encoder._attention_torch(*args, None, scale)
    assert (with_bias[:, :14, :14] - without[:, :14, :14]).abs().max() == 0  # first window: no padding
    assert (with_bias[:, 14:, :] - without[:, 14:, :]).abs().max() > 1e-3


@pytest.mark.parametrize(("length", "size"), [(27, 14), (127, 64), (15, 14)])
def test_relative_position_table_matches_official_gather(length, size):
    rel_pos = torch.randn(length, 8)
    table = relative_position_table(rel_pos, size)
    assert table.shape == (size, size, 8)
    assert torch.allclose(table, get_rel_pos(size, size, rel_pos), atol=1e-6)


def test_backend_resolution_on_this_machine():
    qkv = torch.randn(1, 4, 4, 3 * 32)
    assert resolve_backend("torch", qkv, 2) == "torch"
    assert resolve_backend("auto", qkv, 2) == ("triton" if fast_encoder.triton_supported(qkv.device) else "torch")
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("flash", qkv, 2)
    if not fast_encoder.triton_supported(qkv.device):
        with pytest.raises(ValueError, match="triton attention backend needs"):
            resolve_backend("triton", qkv, 2)
    with pytest.raises(ValueError, match="unknown backend"):
        FastImageEncoderViT(tiny_encoder(), backend="fastest")
    with pytest.raises(TypeError, match="ImageEncoderViT"):
        FastImageEncoderViT(torch.nn.Linear(2, 2))


def test_fast_switch():
    encoder = tiny_encoder()
    assert maybe_accelerate_image_encoder(encoder, fast=False) is encoder
    accelerated = maybe_accelerate_image_encoder(encoder, fast=True)
    assert isinstance(accelerated, FastImageEncoderViT)
    assert accelerated.blocks is encoder.blocks
    default = maybe_accelerate_image_encoder(encoder)
    assert isinstance(default, FastImageEncoderViT) == fast_encoder.default_fast()
    assert fast_encoder.FAST_ENCODER_AVAILABLE == fast_encoder.triton_supported()
    # Re-accelerating re-uses the wrapper instead of nesting it.
    assert accelerate_image_encoder(accelerated, backend="torch") is accelerated
    assert accelerated.backend == "torch"


def test_official_backend_is_the_official_forward():
    encoder = tiny_encoder()
    images = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(FastImageEncoderViT(encoder, backend="official")(images), encoder(images))


# The Triton kernels, run by Triton's CPU interpreter. The interpreter must be switched on before
# Triton is imported, hence a fresh interpreter process. (It has no bfloat16: float32 and float16.)
_INTERPRETER_SCRIPT = textwrap.dedent(
    """
    import torch
    from odssam.models import fast_encoder as fe
    torch.manual_seed(0)
    cases = [  # window, grid side, heads, head dim, (window tile M, N), global key tile, dtypes
        # padded 14-windows, head dim 80 = 64 + 16, several key tiles per window (online softmax)
        (14, 16, 2, 80, (64, 64), 64, (torch.float32, torch.float16)),
        (14, 14, 1, 32, (128, 256), 64, (torch.float32,)),  # one window, one key tile, no padding
        (5, 12, 2, 32, (32, 64), 64, (torch.float32,)),  # window 5: 12 -> 15, three windows a row
        (0, 16, 2, 80, (64, 64), 16, (torch.float32, torch.float16)),  # global, key tile = one row
        (0, 16, 2, 80, (64, 64), 16, (torch.float16,)),  # the same, head dim zero-padded to 128
        (0, 16, 1, 48, (64, 64), 64, (torch.float32,)),  # global, one-hot gather path, 48 = 32 + 16
    ]
    for case, (window, side, heads, head_dim, (tile_m, tile_n), global_tile, dtypes) in enumerate(cases):
        # Alternate the kernel variants: exact head-dim chunks + scale folded into q, or one
        # zero-padded chunk + scale applied to the scores.
        variant = dict(split_head=case % 2 == 0, prescale_q=case % 2 == 0)
        fe.KERNEL_CONFIGS["window"].update(BLOCK_M=tile_m, BLOCK_N=tile_n, **variant)
        fe.KERNEL_CONFIGS["global"].update(BLOCK_N=global_tile, **variant)
        channels = heads * head_dim
        qkv = torch.randn(1, side, side, 3 * channels)
        rows = window or side
        rel_h = torch.randn(2 * rows - 1, head_dim) * 0.3
        rel_w = torch.randn(2 * rows - 1, head_dim) * 0.3
        bias = torch.randn(3 * channels)
        expected = fe._attention_torch(qkv, heads, window, rel_h, rel_w, bias, head_dim ** -0.5)
        for dtype in dtypes:
            tol = 1e-4 if dtype == torch.float32 else 1e-2
            got = fe._attention_triton(qkv.to(dtype), heads, window, rel_h.to(dtype), rel_w.to(dtype),
                                       bias.to(dtype), head_dim ** -0.5)
            err = (got.float() - expected).abs().max().item()
            assert got.shape == expected.shape and err < tol, (window, side, heads, head_dim, dtype, err)
        if window == 5:
            no_rel = fe._attention_triton(qkv, heads, window, None, None, None, 0.1)
            err = (no_rel - fe._attention_torch(qkv, heads, window, None, None, None, 0.1)).abs().max().item()
            assert err < 1e-4, ("no rel", window, err)
        if window == 14 and side == 14:  # through the registered operator torch.compile sees
            via_op = fe._rel_pos_attention_op(qkv, rel_h, rel_w, bias, heads, window, head_dim ** -0.5)
            assert (via_op - expected).abs().max().item() < 1e-4
    print("kernels ok")
    """
)


def test_triton_kernels_match_torch_backend_in_interpreter():
    pytest.importorskip("triton")
    assert "kernels ok" in run_in_triton_interpreter(_INTERPRETER_SCRIPT).stdout


def test_fused_mlp_computes_the_official_mlp():
    block = tiny_encoder().blocks[0]
    x = torch.randn(2, 5, 7, 64)
    expected = block.mlp(x)
    # On the CPU the fused product applies the exact GELU, so this checks the plumbing exactly.
    torch.testing.assert_close(fast_encoder.fused_mlp(block.mlp, x, torch.float32), expected, rtol=1e-5, atol=1e-5)
    assert fast_encoder._reduced_precision(x) is None  # CPU: the block keeps the official MLP


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_mlp_on_cuda_is_within_bf16_rounding():
    block = tiny_encoder().blocks[0].cuda()
    x = torch.randn(2, 16, 16, 64, device="cuda")
    expected = block.mlp(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert fast_encoder._reduced_precision(x) == torch.bfloat16
        fused = fast_encoder.fused_mlp(block.mlp, x, torch.bfloat16)
        plain_bf16 = block.mlp(x)
    fused_error = (fused.float() - expected).abs().max().item()
    bf16_error = (plain_bf16.float() - expected).abs().max().item()
    assert fused_error <= 2 * bf16_error + 1e-3, (fused_error, bf16_error)
