"""Tests of odssam.models.fast_attention (both backends; the Triton kernels of
odssam.models.fast_attention_kernels in Triton's interpreter) against the official attention."""

from __future__ import annotations

import textwrap

import pytest
import torch
from segment_anything.modeling.image_encoder import get_rel_pos

from odssam.models import fast_attention
from odssam.models.fast_attention import relative_position_table

from fast_encoder_helpers import one_torch_thread, tiny_encoder  # noqa: F401 (autouse fixture)
from helpers import run_in_triton_interpreter


def test_padded_window_keys_are_the_qkv_bias():
    """A padded token is zero after the norm, so it attends as the qkv bias: zeroing the bias
    must change the output of a padded window but not of an unpadded one."""
    encoder = tiny_encoder()
    block = encoder.blocks[0]
    qkv = torch.randn(1, 16, 16, 3 * 64)
    args = (qkv, 2, 14, block.attn.rel_pos_h.detach(), block.attn.rel_pos_w.detach())
    scale = block.attn.scale
    with_bias = fast_attention._attention_torch(*args, torch.randn(3 * 64), scale)
    without = fast_attention._attention_torch(*args, None, scale)
    assert (with_bias[:, :14, :14] - without[:, :14, :14]).abs().max() == 0  # first window: no padding
    assert (with_bias[:, 14:, :] - without[:, 14:, :]).abs().max() > 1e-3


@pytest.mark.parametrize(("length", "size"), [(27, 14), (127, 64), (15, 14)])
def test_relative_position_table_matches_official_gather(length, size):
    rel_pos = torch.randn(length, 8)
    table = relative_position_table(rel_pos, size)
    assert table.shape == (size, size, 8)
    assert torch.allclose(table, get_rel_pos(size, size, rel_pos), atol=1e-6)


# The Triton kernels, run by Triton's CPU interpreter. The interpreter must be switched on before
# Triton is imported, hence a fresh interpreter process. (It has no bfloat16: float32 and float16.)
_INTERPRETER_SCRIPT = textwrap.dedent(
    """
    import torch
    from odssam.models import fast_attention as fa
    from odssam.models.fast_attention_kernels import KERNEL_CONFIGS
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
        KERNEL_CONFIGS["window"].update(BLOCK_M=tile_m, BLOCK_N=tile_n, **variant)
        KERNEL_CONFIGS["global"].update(BLOCK_N=global_tile, **variant)
        channels = heads * head_dim
        qkv = torch.randn(1, side, side, 3 * channels)
        rows = window or side
        rel_h = torch.randn(2 * rows - 1, head_dim) * 0.3
        rel_w = torch.randn(2 * rows - 1, head_dim) * 0.3
        bias = torch.randn(3 * channels)
        expected = fa._attention_torch(qkv, heads, window, rel_h, rel_w, bias, head_dim ** -0.5)
        for dtype in dtypes:
            tol = 1e-4 if dtype == torch.float32 else 1e-2
            got = fa._attention_triton(qkv.to(dtype), heads, window, rel_h.to(dtype), rel_w.to(dtype),
                                       bias.to(dtype), head_dim ** -0.5)
            err = (got.float() - expected).abs().max().item()
            assert got.shape == expected.shape and err < tol, (window, side, heads, head_dim, dtype, err)
        if window == 5:
            no_rel = fa._attention_triton(qkv, heads, window, None, None, None, 0.1)
            err = (no_rel - fa._attention_torch(qkv, heads, window, None, None, None, 0.1)).abs().max().item()
            assert err < 1e-4, ("no rel", window, err)
        if window == 14 and side == 14:  # through the registered operator torch.compile sees
            via_op = fa._rel_pos_attention_op(qkv, rel_h, rel_w, bias, heads, window, head_dim ** -0.5)
            assert (via_op - expected).abs().max().item() < 1e-4
    print("kernels ok")
    """
)


def test_triton_kernels_match_torch_backend_in_interpreter():
    pytest.importorskip("triton")
    assert "kernels ok" in run_in_triton_interpreter(_INTERPRETER_SCRIPT).stdout
