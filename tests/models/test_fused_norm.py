import textwrap

import pytest
import torch
from torch import nn

from odssam.models import fused_norm
from odssam.models.fused_norm import add_layer_norm, kernel_fits

from helpers import run_in_triton_interpreter


def _norm(channels: int) -> nn.LayerNorm:
    torch.manual_seed(0)
    norm = nn.LayerNorm(channels, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


def test_fallback_is_add_then_norm():
    norm = _norm(24)
    x, update = torch.randn(2, 3, 5, 24), torch.randn(2, 3, 5, 24)
    total, normed = add_layer_norm(x, update, norm, None)
    torch.testing.assert_close(total, x + update)
    torch.testing.assert_close(normed, norm(x + update))


def test_kernel_is_not_used_where_it_cannot_run():
    norm = _norm(8)
    x = torch.randn(4, 8)
    if not fused_norm._interpreting():
        assert not kernel_fits(x, x, norm)  # CPU without Triton's interpreter
    assert not kernel_fits(x, x, nn.GroupNorm(1, 8))
    with torch.no_grad():
        assert not kernel_fits(x, torch.randn(4, 7), norm)


_INTERPRETER_SCRIPT = textwrap.dedent(
    """
    import torch
    from torch import nn
    from odssam.models.fused_norm import add_layer_norm, kernel_fits

    torch.manual_seed(0)
    for channels in (24, 80):
        norm = nn.LayerNorm(channels, eps=1e-6)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
            x = torch.randn(3, 5, channels) * 3 + 1
            update = torch.randn(3, 5, channels).to(torch.bfloat16)
            assert kernel_fits(x, update, norm)
            total, normed = add_layer_norm(x, update, norm, torch.bfloat16)
            expected_total = x + update
            expected = norm(expected_total)
        assert total.dtype == torch.float32 and normed.dtype == torch.bfloat16
        assert (total - expected_total).abs().max().item() < 1e-5
        # within one bf16 step of the fp32 result
        excess = ((normed.float() - expected).abs() - expected.abs() * 2**-7).max().item()
        assert excess < 1e-3, excess
    print("fused norm ok")
    """
)


def test_kernel_matches_add_then_norm_in_the_interpreter():
    pytest.importorskip("triton")
    assert "fused norm ok" in run_in_triton_interpreter(_INTERPRETER_SCRIPT).stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernel_on_cuda_matches_autocast_add_then_norm():
    norm = _norm(1280).cuda()
    x = torch.randn(2, 16, 16, 1280, device="cuda")
    update = torch.randn(2, 16, 16, 1280, device="cuda").to(torch.bfloat16)
    with torch.no_grad():
        total, normed = add_layer_norm(x, update, norm, torch.bfloat16)
        expected = norm(x + update)
    torch.testing.assert_close(total, x + update)
    assert normed.dtype == torch.bfloat16
    assert ((normed.float() - expected).abs() - expected.abs() * 2**-8).max().item() < 1e-3
