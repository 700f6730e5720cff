"""The tap-gather bicubic resize against ``F.interpolate(mode="bicubic")``: values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from odssam.config import FeatureEncoderConfig
from odssam.models.feature_encoder import SamNeck
from odssam.models.resize import resize_bicubic


def reference(x, size):
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


@pytest.mark.parametrize(
    "in_size, out_size",
    [((16, 16), (64, 64)), ((32, 32), (64, 64)), ((5, 7), (13, 29)), ((64, 48), (30, 17)), ((1, 3), (4, 3))],
)
def test_values_and_gradients_equal_interpolate(in_size, out_size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, *out_size, dtype=torch.float64)
    ours = resize_bicubic(x.float(), out_size)
    expected = reference(x, out_size)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-5)
    (grad_ours,) = torch.autograd.grad((resize_bicubic(x, out_size) * weights).sum(), x)
    (grad_ref,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-5, atol=1e-5)


def test_keeps_dtype_and_channels_last_layout():
    x = torch.randn(2, 8, 16, 16).to(memory_format=torch.channels_last).bfloat16()
    y = resize_bicubic(x, (64, 64))
    assert y.dtype == torch.bfloat16
    assert y.is_contiguous(memory_format=torch.channels_last)
    # computed in float32, rounded once: as close to the float32 reference as bf16 allows
    torch.testing.assert_close(y.float(), reference(x.float(), (64, 64)), rtol=1e-2, atol=1e-2)


def test_a_size_already_reached_is_returned_unchanged():
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(resize_bicubic(x, (9, 9)), x, rtol=0, atol=0)


def test_neck_bicubic_equals_the_interpolate_neck():
    torch.manual_seed(0)
    neck = SamNeck([8, 16, 32], width=16, num_blocks=1, upsample_mode="bicubic").eval()
    levels = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)]
    ours = neck(levels, (16, 16))
    neck.resize = lambda y, size: reference(y, size)  # the reference path, same weights
    torch.testing.assert_close(ours, neck(levels, (16, 16)), rtol=1e-5, atol=1e-5)
    assert FeatureEncoderConfig(upsample_mode="bicubic").upsample_mode == "bicubic"
