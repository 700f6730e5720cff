"""Tests of odssam.models.fast_encoder against the official segment_anything encoder."""

from __future__ import annotations

import functools

import pytest
import torch

from odssam.models import fast_attention, fast_encoder
from odssam.models.fast_attention import resolve_backend
from odssam.models.fast_attention_kernels import triton_supported
from odssam.models.fast_encoder import (
    FastImageEncoderViT,
    accelerate_image_encoder,
    maybe_accelerate_image_encoder,
)

from fast_encoder_helpers import one_torch_thread, tiny_encoder  # noqa: F401 (autouse fixture)


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
    attention = fast_attention._attention_torch
    monkeypatch.setattr(fast_attention, "_attention_torch", functools.partial(attention, fold=fold))
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


def test_backend_resolution_on_this_machine():
    qkv = torch.randn(1, 4, 4, 3 * 32)
    assert resolve_backend("torch", qkv, 2) == "torch"
    assert resolve_backend("auto", qkv, 2) == ("triton" if triton_supported(qkv.device) else "torch")
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("flash", qkv, 2)
    if not triton_supported(qkv.device):
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
    assert fast_encoder.FAST_ENCODER_AVAILABLE == triton_supported()
    # Re-accelerating re-uses the wrapper instead of nesting it.
    assert accelerate_image_encoder(accelerated, backend="torch") is accelerated
    assert accelerated.backend == "torch"


def test_official_backend_is_the_official_forward():
    encoder = tiny_encoder()
    images = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(FastImageEncoderViT(encoder, backend="official")(images), encoder(images))


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "img_size, window_size, rel_pos_length",
    [(256, 14, None), (224, 7, None), (256, 14, 23)],
    ids=["padded-windows", "exact-windows", "resampled-tables"],
)
def test_exact_backend_equals_the_official_forward_bit_for_bit(device, img_size, window_size, rel_pos_length):
    # fp32 on CUDA runs "exact" by default: it must be the official function to the last bit.
    encoder = tiny_encoder(img_size=img_size, window_size=window_size).to(device)
    if rel_pos_length is not None:  # tables trained for another grid: both resample them
        generator = torch.Generator().manual_seed(1)
        for block in encoder.blocks:
            for name in ("rel_pos_h", "rel_pos_w"):
                table = torch.randn(rel_pos_length, getattr(block.attn, name).shape[1], generator=generator)
                setattr(block.attn, name, torch.nn.Parameter(table.to(device)))
    images = torch.randn(2, 3, img_size, img_size, device=device)
    exact = FastImageEncoderViT(encoder, backend="exact")
    with torch.no_grad():
        assert torch.equal(exact(images), encoder(images))
    if device == "cuda":
        auto = FastImageEncoderViT(encoder, backend="auto")
        with torch.no_grad():
            assert torch.equal(auto(images), encoder(images))


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
