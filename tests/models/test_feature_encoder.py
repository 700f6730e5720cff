import pytest
import timm
import torch

from odssam.config import FeatureEncoderConfig, from_dict
from odssam.errors import OdsSamError
from odssam.models.feature_encoder import FEATURE_ENCODERS, FeatureEncoder, build_backbone

TINY = FeatureEncoderConfig(backbone="efficientvit_tiny", neck_blocks=1, out_channels=32)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_names():
    assert set(FEATURE_ENCODERS) == {"efficientvit_l0", "efficientvit_l1", "efficientvit_l2", "efficientvit_tiny"}
    assert FeatureEncoderConfig().backbone == "efficientvit_l1"


def test_l1_with_neck_matches_the_reference_parameter_count():
    encoder = FeatureEncoder(FeatureEncoderConfig())
    assert _count(encoder) == pytest.approx(43.586e6, rel=2e-3)
    # neck: 3 lateral 1x1 conv+BN, 8 FusedMBConv(256, expand 1), 1x1 conv with bias, LayerNorm2d
    lateral = (128 + 256 + 512) * 256 + 3 * 2 * 256
    block = 256 * 256 * 9 + 2 * 256 + 256 * 256 + 2 * 256
    assert _count(encoder.neck) == lateral + 8 * block + 256 * 256 + 256 + 2 * 256


def test_l1_levels_and_output_grid():
    encoder = FeatureEncoder(FeatureEncoderConfig()).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        levels = encoder.backbone(x)
        out = encoder(x)
    assert [tuple(level.shape[1:]) for level in levels] == [(128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert out.shape == (1, 256, 16, 16)
    assert torch.isfinite(out).all()


def test_backbone_matches_timm_efficientvit_l1():
    reference = timm.create_model("efficientvit_l1", pretrained=False).eval()
    backbone = build_backbone("efficientvit_l1").eval()
    weights = {k: v for k, v in reference.state_dict().items() if not k.startswith("head.")}
    backbone.load_state_dict(weights, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = backbone(x)
        theirs = reference.forward_intermediates(x, indices=[1, 2, 3], intermediates_only=True)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "name, attention_blocks", [("efficientvit_l0", 4), ("efficientvit_l1", 6), ("efficientvit_l2", 8)]
)
def test_family_depths(name, attention_blocks):
    backbone = build_backbone(name)
    assert backbone.out_channels == (128, 256, 512)
    # the last stage is one downsampling block followed by the EfficientViT blocks
    assert len(backbone.stages[-1].blocks) == 1 + attention_blocks


def test_tiny_encoder_forward_and_output_norm():
    encoder = FeatureEncoder(TINY)
    assert _count(encoder.backbone) < 200_000
    assert encoder.backbone.out_channels == (16, 16, 32)
    x = torch.randn(2, 3, 64, 48)
    out = encoder(x)
    assert out.shape == (2, 32, 8, 6)
    # freshly initialised LayerNorm2d: every pixel's channel vector is standardised
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 8, 6), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.var(dim=1, unbiased=False), torch.ones(2, 8, 6), atol=1e-2, rtol=0)


def test_upsample_modes_differ():
    bilinear = FeatureEncoder(TINY).eval()
    bicubic = FeatureEncoder(FeatureEncoderConfig(**{**vars(TINY), "upsample_mode": "bicubic"})).eval()
    bicubic.load_state_dict(bilinear.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(bilinear(x), bicubic(x))


def test_input_side_must_be_multiple_of_eight():
    with pytest.raises(ValueError, match="multiples of 8"):
        FeatureEncoder(TINY)(torch.randn(1, 3, 60, 64))


def test_bad_config_raises_user_error():
    with pytest.raises(OdsSamError, match="efficientvit_l9.*feature_encoder.backbone"):
        FeatureEncoder(FeatureEncoderConfig(backbone="efficientvit_l9"))
    with pytest.raises(OdsSamError, match="upsample_mode"):  # refused when the config is built
        FeatureEncoder(from_dict(FeatureEncoderConfig, {"backbone": "efficientvit_tiny", "upsample_mode": "nearest"}))
