import pytest
import torch
import torch.nn.functional as F

from odssam.models.odconv import PER_SAMPLE_METHODS, ODConv2d


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _force_unit_attentions(conv: ODConv2d, monkeypatch: pytest.MonkeyPatch) -> None:
    def ones(x):
        batch = x.shape[0]
        k = conv.kernel_size
        return (
            torch.ones(batch, conv.in_channels),
            torch.ones(batch, conv.out_channels),
            torch.ones(batch, k, k),
            torch.ones(batch, conv.kernel_num),
        )

    monkeypatch.setattr(conv.attention, "forward", ones)


@pytest.mark.parametrize("dilation", [1, 2])
def test_unit_attentions_equal_plain_conv(dilation, monkeypatch):
    conv = ODConv2d(8, 12, 3, dilation=dilation, kernel_num=1)
    _force_unit_attentions(conv, monkeypatch)
    x = torch.randn(3, 8, 10, 10)
    expected = F.conv2d(x, conv.weight[0], padding=dilation, dilation=dilation)
    out = conv(x)
    assert out.shape == (3, 12, 10, 10)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def _explicit_loop(conv: ODConv2d, x: torch.Tensor) -> torch.Tensor:
    """Per-sample F.conv2d with the kernel aggregated from the ODConv definition."""
    channel, filter_, spatial, kernel = conv.attention(x)
    outputs = []
    for b in range(x.shape[0]):
        weight = torch.zeros_like(conv.weight[0])
        for k in range(conv.kernel_num):
            weight = weight + kernel[b, k] * conv.weight[k]
        weight = weight * spatial[b][None, None]
        weight = weight * filter_[b][:, None, None, None]
        in_per_group = conv.in_channels // conv.groups
        out_per_group = conv.out_channels // conv.groups
        # channel attention scales the input channels that feed each output channel's group
        group_of_output = torch.arange(conv.out_channels) // out_per_group
        input_index = group_of_output[:, None] * in_per_group + torch.arange(in_per_group)[None]
        weight = weight * channel[b][input_index][:, :, None, None]
        outputs.append(
            F.conv2d(x[b : b + 1], weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        )
    return torch.cat(outputs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dilation=1),
        dict(dilation=2),
        dict(dilation=1, groups=2, stride=2),
        dict(dilation=3, kernel_num=4, temperature=5.0),
    ],
)
@pytest.mark.parametrize("per_sample", PER_SAMPLE_METHODS)
def test_real_attentions_equal_explicit_per_sample_loop(kwargs, per_sample):
    conv = ODConv2d(8, 6, 3, per_sample=per_sample, **kwargs)
    conv.attention.norm.running_mean.uniform_(-0.5, 0.5)
    conv.attention.norm.running_var.uniform_(0.5, 2.0)
    conv.eval()
    x = torch.randn(4, 8, 11, 9)
    out = conv(x)
    torch.testing.assert_close(out, _explicit_loop(conv, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_per_sample_methods_agree_in_values_and_gradients(memory_format):
    conv = ODConv2d(8, 8, 3, dilation=2, kernel_num=4).train()
    x = torch.randn(3, 8, 9, 7).contiguous(memory_format=memory_format)
    grad_out = torch.randn(3, 8, 9, 7)
    results = {}
    for method in PER_SAMPLE_METHODS:
        conv.per_sample = method
        conv.zero_grad()
        x_in = x.clone().requires_grad_(True)
        out = conv(x_in)
        out.backward(grad_out)
        results[method] = (out, x_in.grad, [p.grad.clone() for p in conv.parameters()])
    expected_out, expected_dx, expected_grads = results[PER_SAMPLE_METHODS[0]]
    for method in PER_SAMPLE_METHODS[1:]:
        out, dx, grads = results[method]
        torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dx, expected_dx, rtol=1e-5, atol=1e-5)
        for grad, expected in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


def test_unknown_per_sample_method_is_refused():
    with pytest.raises(ValueError, match="per_sample"):
        ODConv2d(4, 4, 3, per_sample="fft")


def test_samples_get_different_kernels():
    conv = ODConv2d(8, 8, 3).eval()
    x = torch.randn(1, 8, 7, 7)
    batch = torch.cat([x, 3 * x.flip(-1) + 1])
    # the first sample's result must not depend on its batch neighbour
    torch.testing.assert_close(conv(batch)[:1], conv(x), rtol=1e-5, atol=1e-5)
    _, _, _, kernel = conv.attention(batch)
    assert not torch.allclose(kernel[0], kernel[1])


def test_trivial_heads_are_skipped():
    depthwise = ODConv2d(16, 16, 3, groups=16, kernel_num=1)
    assert depthwise.attention.filter_head is None
    assert depthwise.attention.kernel_head is None
    pointwise = ODConv2d(16, 32, 1)
    assert pointwise.attention.spatial_head is None
    assert pointwise.padding == 0
    x = torch.randn(2, 16, 5, 5)
    assert depthwise(x).shape == (2, 16, 5, 5)
    assert pointwise(x).shape == (2, 32, 5, 5)


def test_parameter_count_of_a_256_channel_layer():
    conv = ODConv2d(256, 256, 3, kernel_num=8)
    hidden = 16  # max(int(256 / 16), 16)
    attention = 256 * hidden + 2 * hidden + 2 * (hidden * 256 + 256) + (hidden * 9 + 9) + (hidden * 8 + 8)
    expected = 8 * 256 * 256 * 9 + attention
    count = sum(p.numel() for p in conv.parameters())
    assert count == expected
    assert count == pytest.approx(4.73e6, rel=1e-3)


def test_default_padding_follows_dilation():
    assert ODConv2d(4, 4, 3, dilation=2).padding == 2
    assert ODConv2d(4, 4, 5, dilation=3).padding == 6
    assert ODConv2d(4, 4, 3, dilation=2, padding=0).padding == 0


def test_gradients_reach_all_parameters():
    conv = ODConv2d(8, 8, 3, kernel_num=4).train()
    x = torch.randn(3, 8, 6, 6, requires_grad=True)
    conv(x).square().mean().backward()
    for name, parameter in conv.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_temperature_flattens_the_kernel_attention():
    conv = ODConv2d(8, 8, 3, kernel_num=4).eval()
    x = torch.randn(2, 8, 6, 6)
    sharp = conv.attention(x)[3]
    conv.update_temperature(1000.0)
    assert conv.temperature == 1000.0
    flat = conv.attention(x)[3]
    assert (flat - 0.25).abs().max() < (sharp - 0.25).abs().max()
    assert (flat - 0.25).abs().max() < 1e-2
    with pytest.raises(ValueError):
        conv.update_temperature(0.0)


def test_training_batch_of_one_uses_running_statistics():
    conv = ODConv2d(8, 8, 3).train()
    before = conv.attention.norm.running_mean.clone()
    out = conv(torch.randn(1, 8, 5, 5))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(conv.attention.norm.running_mean, before)
    conv(torch.randn(2, 8, 5, 5))
    assert not torch.allclose(conv.attention.norm.running_mean, before)
