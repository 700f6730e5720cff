"""The baselines' prompt networks on a tiny frozen SAM: sam_noprompt and autosam (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_only_the_prompt_encoder_learns, random_rgb

from odssam.config import AutoSamConfig, ModelConfig, PromptEncoderConfig, SamConfig, with_overrides
from odssam.errors import OdsSamError
from odssam.models.baselines.autosam import AutoSamPromptEncoder
from odssam.models.baselines.hardnet import HARDNET_SPECS, HarDBlock, HarDNet, harmonic_links
from odssam.models.baselines.noprompt import NoPromptEncoder, no_mask_embedding
from odssam.models.ods_sam import OdsSam
from odssam.models.profiling import profile_model
from odssam.models.registry import build_model, build_segmenter
from odssam.models.segmenter import FrozenSegmenter

TABLE7_AUTOSAM_PARAMS = 88.569e6
TINY_AUTOSAM = AutoSamConfig(backbone="hardnet_tiny", top_channels=32)


def tiny_config(name: str) -> ModelConfig:
    return ModelConfig(
        name=name,
        sam=SamConfig(variant="vit_micro", image_size=256),
        prompt_encoder=PromptEncoderConfig(input_size=128, autosam=TINY_AUTOSAM),
    )


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", params=["sam_noprompt", "autosam"])
def model(request):
    torch.manual_seed(0)
    return build_model(tiny_config(request.param))


def images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [random_rgb(rng, h, w) for h, w in sizes]


# --------------------------------------------------------------------------- both baselines


def test_baselines_are_the_frozen_segmenter_model_with_their_prompt_network(model):
    assert isinstance(model, OdsSam)
    expected = {"sam_noprompt": NoPromptEncoder, "autosam": AutoSamPromptEncoder}
    assert any(isinstance(model.prompt_encoder, kind) for kind in expected.values())
    assert model.trainable is model.prompt_encoder


def test_forward_shape_no_nan_and_postprocess(model):
    model.eval()
    x, input_sizes, original_sizes = model.preprocess(images([(90, 120), (128, 64)]))
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 1, 64, 64)
    assert torch.isfinite(logits).all()
    assert model.prompt(x).shape == model.encode(x)[0].shape == (2, 256, 16, 16)
    maps = model.postprocess(logits, input_sizes, original_sizes)
    assert [tuple(m.shape[-2:]) for m in maps] == [(90, 120), (128, 64)]


def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(model):
    model.train()
    assert not model.segmenter.training
    assert_only_the_prompt_encoder_learns(model, images([(96, 96), (80, 112)], seed=3))


def test_model_name_sets_the_prompt_network_whatever_prompt_encoder_name_says():
    cfg = with_overrides(tiny_config("autosam"), {"prompt_encoder.name": "ods"}, "model.")
    assert isinstance(build_model(cfg).prompt_encoder, AutoSamPromptEncoder)


def test_profile_reports_the_baselines_learnable_part():
    for name, expected_type in (("sam_noprompt", NoPromptEncoder), ("autosam", AutoSamPromptEncoder)):
        cfg = tiny_config(name)
        report = profile_model(cfg)
        learnable = report["learnable"]
        assert learnable["params"] == count(expected_type(cfg.prompt_encoder))
        assert learnable["scan_flops"] == 0  # no OD-SSM in a baseline
        assert (learnable["flops"] > 0) == (name == "autosam")  # the learned embedding costs no FLOPs
        assert report["frozen"]


# --------------------------------------------------------------------------- sam_noprompt


def test_noprompt_starts_at_sams_own_no_mask_prediction():
    model = build_model(tiny_config("sam_noprompt")).eval()
    sam = model.segmenter.sam
    x, _, _ = model.preprocess(images([(100, 80)], seed=5))
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        official, _ = sam.mask_decoder(
            image_embeddings=sam.image_encoder(x),
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        assert torch.equal(model.prompt(x), dense)
        torch.testing.assert_close(model(x), official)


def test_noprompt_embedding_is_one_parameter_shared_by_every_image():
    encoder = build_model(tiny_config("sam_noprompt")).prompt_encoder
    assert [(name, tuple(p.shape)) for name, p in encoder.named_parameters()] == [("embedding", (1, 256, 16, 16))]
    with torch.no_grad():
        encoder.embedding.normal_()
    a, b = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)
    torch.testing.assert_close(encoder(torch.cat([a, b])), encoder.embedding.repeat(2, 1, 1, 1))


def test_noprompt_finds_sam2s_no_mask_embedding():
    segmenter = build_segmenter(SamConfig(variant="sam2_hiera_micro", image_size=128))
    vector = no_mask_embedding(segmenter)
    assert vector.shape == (1, 256)
    assert torch.equal(vector, segmenter.model.sam_prompt_encoder.no_mask_embed.weight)


def test_noprompt_needs_a_no_mask_embedding():
    class Bare(FrozenSegmenter):
        variant = "bare"

    with pytest.raises(OdsSamError, match="'bare' has no 'no_mask_embed'"):
        no_mask_embedding(Bare())


def test_the_default_noprompt_embedding_is_sams_64x64_grid():
    with torch.device("meta"):
        encoder = NoPromptEncoder(PromptEncoderConfig())
    assert encoder.embedding.shape == (1, 256, 64, 64) and count(encoder) == 256 * 64 * 64


# --------------------------------------------------------------------------- autosam


def test_autosam_has_table7s_parameter_count():
    with torch.device("meta"):
        encoder = AutoSamPromptEncoder(PromptEncoderConfig())
        backbone = HarDNet(HARDNET_SPECS["hardnet85"])
    assert count(encoder) == pytest.approx(TABLE7_AUTOSAM_PARAMS, rel=0.10)
    assert count(encoder) == 88_219_548
    assert count(backbone) == 35_389_212  # HarDNet-85 without its ImageNet classifier


def test_autosam_with_the_skip_width_rule_for_every_block():
    cfg = PromptEncoderConfig(autosam=AutoSamConfig(top_channels=720))
    with torch.device("meta"):
        assert count(AutoSamPromptEncoder(cfg)) == 59_186_268


def test_hardnet85_layout():
    assert harmonic_links(1) == [0] and harmonic_links(6) == [5, 4] and harmonic_links(8) == [7, 6, 4, 0]
    with torch.device("meta"):
        backbone = HarDNet(HARDNET_SPECS["hardnet85"])
        first = HarDBlock(96, 24, 1.7, 8)
    # Layer widths of the first block: 24 for one link, x1.7 per extra link, rounded down to even.
    assert [layer[0].out_channels for layer in first.layers] == [24, 40, 24, 70, 24, 40, 24, 118]
    assert first.out_channels == 24 * 4 + 118 == 214
    assert [stage[0].out_channels for stage in backbone.stages] == [214, 392, 458, 588, 784, 1252]
    assert backbone.feature_channels == [192, 320, 720, 1280]


def test_hardnet_features_at_strides_4_to_32():
    backbone = HarDNet(HARDNET_SPECS["hardnet_tiny"]).eval()
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 96, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(16, 24, 24), (32, 12, 12), (48, 6, 6), (64, 3, 3)]


def test_autosam_prompt_is_a_tanh_map_on_the_eighth_grid():
    encoder = AutoSamPromptEncoder(PromptEncoderConfig(input_size=96, autosam=TINY_AUTOSAM)).eval()
    with torch.no_grad():
        prompt = encoder(torch.randn(2, 3, 96, 96) * 3)
    assert prompt.shape == (2, 256, 12, 12)
    assert prompt.abs().max() <= 1 and prompt.std() > 0


def test_autosam_channels_last_keeps_the_values():
    encoder = AutoSamPromptEncoder(PromptEncoderConfig(input_size=64, autosam=TINY_AUTOSAM)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = encoder(x)
        encoder.set_channels_last(True)
        assert encoder.backbone.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(encoder(x), expected, rtol=1e-5, atol=1e-5)


def test_autosam_refuses_an_input_hardnet_cannot_reduce():
    with pytest.raises(OdsSamError, match="model.prompt_encoder.input_size: got 32"):
        AutoSamPromptEncoder(PromptEncoderConfig(input_size=32, autosam=TINY_AUTOSAM))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("top_channels", 0, "top_channels: got 0"), ("backbone", "hardnet68", "backbone: got 'hardnet68'")],
)
def test_autosam_config_values_are_checked(key, value, message):
    with pytest.raises(OdsSamError, match=f"model.prompt_encoder.autosam.{message}"):
        with_overrides(ModelConfig(name="autosam"), {f"prompt_encoder.autosam.{key}": value}, "model.")
