import dataclasses

import pytest
import torch

from odssam.config import FeatureEncoderConfig, ODConvConfig, PromptEncoderConfig, SSMConfig, with_overrides
from odssam.errors import OdsSamError
from odssam.models.odconv import ODConv2d
from odssam.models.prompt_encoder import PROMPT_ENCODER_CONFIGS, OdsPromptEncoder, build_prompt_encoder
from odssam.models.shape_only import shape_only


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_config(**overrides) -> PromptEncoderConfig:
    """Small channels and grid so every variant runs in well under a second."""
    cfg = PromptEncoderConfig(
        input_size=64,
        feature_encoder=FeatureEncoderConfig(backbone="efficientvit_tiny", neck_blocks=1, out_channels=32),
        ssm=SSMConfig(d_state=4, dt_rank=4),
        odconv=ODConvConfig(kernel_num=4),
    )
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module")
def default_encoder() -> OdsPromptEncoder:
    torch.manual_seed(0)
    return build_prompt_encoder(PromptEncoderConfig()).eval()


def test_default_parameter_count(default_encoder):
    counts = default_encoder.count_parameters()
    assert counts["total"] == pytest.approx(53.687e6, rel=5e-3)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert counts["feature_encoder"] == pytest.approx(43.586e6, rel=2e-3)
    # DW 3x3 and PW 1x1 convs with bias, then BN
    assert counts["dwconv"] == (256 * 9 + 256) + (256 * 256 + 256) + 2 * 256
    odconv_layer = 8 * 256 * 256 * 9 + 256 * 16 + 2 * 16 + 2 * (16 * 256 + 256) + (16 * 9 + 9) + (16 * 8 + 8)
    assert counts["odconv"] == 2 * (odconv_layer + 2 * 256)
    assert counts["od_ssm"] == pytest.approx(0.57e6, rel=0.02)


def test_default_output_grid(default_encoder):
    with torch.no_grad():
        out = default_encoder(torch.randn(1, 3, 128, 128))
    assert out.shape == (1, 256, 16, 16)
    assert torch.isfinite(out).all()


def test_default_output_at_512_is_sam_prompt_grid():
    with shape_only():
        encoder = build_prompt_encoder(PromptEncoderConfig())
        out = encoder(torch.empty(2, 3, 512, 512))
    assert out.shape == (2, 256, 64, 64)


def test_tiny_forward_backward_reaches_every_parameter():
    encoder = build_prompt_encoder(tiny_config()).train()
    x = torch.randn(2, 3, 64, 64)
    out = encoder(x)
    assert out.shape == (2, 32, 8, 8)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_stages_run_in_figure_order():
    encoder = build_prompt_encoder(tiny_config()).eval()
    calls = []
    for name in ("dwconv", "od_ssm", "odconv"):
        getattr(encoder.ssmodc, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    encoder(torch.randn(1, 3, 64, 64))
    assert calls == ["dwconv", "od_ssm", "odconv"]


@pytest.mark.parametrize("residual", [True, False])
def test_residual_switch(residual):
    encoder = build_prompt_encoder(tiny_config(residual=residual)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = encoder.feature_encoder(x)
        refined = encoder.ssmodc(features)
        out = encoder(x)
    torch.testing.assert_close(out, features + refined if residual else refined)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(use_ssm=False),
        dict(use_odconv=False),
        dict(use_dwconv=False),
        dict(use_ssm=False, use_odconv=False),
        *(dict(odconv=ODConvConfig(num_layers=n, kernel_num=4)) for n in (1, 2, 3)),
        *(dict(ssm=SSMConfig(num_layers=n, d_state=4, dt_rank=4)) for n in (1, 2, 3)),
        dict(ssm=SSMConfig(directions=8, d_state=4, dt_rank=4)),
    ],
    ids=[
        "no_ssm",
        "no_odconv",
        "no_dwconv",
        "no_ssm_no_odconv",
        *(f"odconv_layers_{n}" for n in (1, 2, 3)),
        *(f"ssm_layers_{n}" for n in (1, 2, 3)),
        "ssm_directions_8",
    ],
)
def test_ablation_variants_build_and_run(overrides):
    cfg = tiny_config(**overrides)
    encoder = build_prompt_encoder(cfg)
    ssmodc = encoder.ssmodc
    assert (ssmodc.dwconv is not None) == cfg.use_dwconv
    assert (ssmodc.od_ssm is not None) == cfg.use_ssm
    assert (ssmodc.odconv is not None) == cfg.use_odconv
    if cfg.use_ssm:
        assert len(ssmodc.od_ssm) == cfg.ssm.num_layers
    if cfg.use_odconv:
        dilations = [branch[0].dilation for branch in ssmodc.odconv.branches]
        assert dilations == list(range(1, cfg.odconv.num_layers + 1))
        assert [branch[0].padding for branch in ssmodc.odconv.branches] == dilations
    out = encoder(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 32, 8, 8)
    assert torch.isfinite(out).all()


def test_more_ssm_layers_add_parameters():
    one = build_prompt_encoder(tiny_config()).count_parameters()["od_ssm"]
    three = build_prompt_encoder(tiny_config(ssm=SSMConfig(num_layers=3, d_state=4, dt_rank=4))).count_parameters()
    assert three["od_ssm"] == 3 * one


def test_all_stages_off_gives_the_feature_map():
    encoder = build_prompt_encoder(tiny_config(use_dwconv=False, use_ssm=False, use_odconv=False)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), encoder.feature_encoder(x))
    counts = encoder.count_parameters()
    assert counts["dwconv"] == counts["od_ssm"] == counts["odconv"] == 0


def test_odconv_temperature_reaches_every_layer():
    encoder = build_prompt_encoder(tiny_config(odconv=ODConvConfig(num_layers=3, kernel_num=4, temperature=30.0)))
    layers = [m for m in encoder.modules() if isinstance(m, ODConv2d)]
    assert len(layers) == 3 and all(layer.temperature == 30.0 for layer in layers)
    encoder.set_odconv_temperature(2.5)
    assert all(layer.temperature == 2.5 for layer in layers)


def test_named_configs():
    assert set(PROMPT_ENCODER_CONFIGS) >= {"default", "ods_sam", "tiny"}
    encoder = build_prompt_encoder("tiny").eval()
    with torch.no_grad():
        out = encoder(torch.randn(1, 3, encoder.input_size, encoder.input_size))
    assert out.shape == (1, 256, 8, 8)
    with pytest.raises(OdsSamError, match="unknown prompt encoder"):
        build_prompt_encoder("huge")


@pytest.mark.parametrize(
    "key, value",
    [
        ("input_size", 100),
        ("odconv.num_layers", 0),
        ("odconv.kernel_size", 4),
        ("odconv.temperature", 0.0),
        ("odconv.per_sample", "fft"),
        ("odconv.arrangement", "serial"),
        ("ssm.num_layers", 0),
    ],
)
def test_bad_config_values_raise_user_errors(key, value):
    # Refused when the config is built (odssam.config.from_dict), before any module is.
    with pytest.raises(OdsSamError, match=f"config key model.prompt_encoder.{key}: got "):
        build_prompt_encoder(with_overrides(tiny_config(), {key: value}, "model.prompt_encoder."))


def test_channels_last_gives_the_same_values_and_gradients():
    encoder = build_prompt_encoder(tiny_config()).train()
    x = torch.randn(2, 3, 64, 64)
    grad_out = torch.randn(2, 32, 8, 8)

    def run():
        encoder.zero_grad()
        out = encoder(x)
        out.backward(grad_out)
        return out.detach(), {name: p.grad.clone() for name, p in encoder.named_parameters()}

    expected_out, expected_grads = run()
    encoder.set_channels_last(True)
    kernels = [p for p in encoder.parameters() if p.dim() == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    out, grads = run()
    torch.testing.assert_close(out, expected_out, rtol=1e-4, atol=1e-5)
    # Biases in front of a BatchNorm have a gradient that is zero up to rounding, so the
    # tolerance is relative to the largest gradient of the model.
    scale = max(g.abs().max().item() for g in expected_grads.values())
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-3, atol=1e-4 * scale, msg=name)
    encoder.set_channels_last(False)
    assert not encoder.channels_last
    assert all(p.is_contiguous() for p in encoder.parameters())
