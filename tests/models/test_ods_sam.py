"""OdsSam assembly: shapes, batching, frozen SAM, gradients."""

import numpy as np
import pytest
import torch
from helpers import assert_only_the_prompt_encoder_learns, random_rgb

from odssam.config import FeatureEncoderConfig, ModelConfig, PromptEncoderConfig, SamConfig, SSMConfig, with_overrides
from odssam.models.ods_sam import build_ods_sam


def tiny_model_config(**prompt_overrides) -> ModelConfig:
    return ModelConfig(
        sam=SamConfig(variant="vit_micro", image_size=256),
        prompt_encoder=PromptEncoderConfig(
            input_size=128,
            feature_encoder=FeatureEncoderConfig(backbone="efficientvit_tiny", neck_blocks=1),
            ssm=SSMConfig(scan_backend="chunked"),
            **prompt_overrides,
        ),
    )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_ods_sam(tiny_model_config())


def random_images(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [random_rgb(rng, h, w) for h, w in sizes]


def test_forward_shapes_and_postprocess(model):
    images = random_images([(90, 120), (128, 64)])
    x, input_sizes, original_sizes = model.preprocess(images)
    assert x.shape == (2, 3, 256, 256)
    logits = model(x)
    assert logits.shape == (2, 1, 64, 64)
    assert torch.isfinite(logits).all()
    maps = model.postprocess(logits, input_sizes, original_sizes)
    assert [tuple(m.shape[-2:]) for m in maps] == [(90, 120), (128, 64)]


def test_encode_and_prompt_grids_match(model):
    x, _, _ = model.preprocess(random_images([(100, 100)]))
    assert model.encode(x)[0].shape == model.prompt(x).shape == (1, 256, 16, 16)


def test_batched_decoder_equals_per_image_loop(model):
    model.eval()
    x, _, _ = model.preprocess(random_images([(80, 100), (100, 80), (64, 64)], seed=1))
    with torch.no_grad():
        embeddings, prompts = model.encode(x)[0], model.prompt(x)
        batched = model.decode(embeddings, prompts)
        looped = torch.cat([model.decode(embeddings[i : i + 1], prompts[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)


def test_cached_embeddings_give_the_same_logits(model):
    model.eval()
    x, _, _ = model.preprocess(random_images([(70, 90)], seed=2))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, image_embeddings=model.encode(x)))


def test_only_the_prompt_encoder_trains(model):
    model.train()
    assert not model.segmenter.training, "SAM must stay in eval mode"
    assert all(not p.requires_grad for p in model.segmenter.parameters())
    assert_only_the_prompt_encoder_learns(model, random_images([(96, 96), (80, 112)], seed=3))


def test_random_sam_weights_are_reproducible():
    a = build_ods_sam(tiny_model_config())
    b = build_ods_sam(tiny_model_config())
    for (name, pa), pb in zip(a.segmenter.state_dict().items(), b.segmenter.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_fast_encoder_switch_keeps_weights_and_function():
    fast_cfg = tiny_model_config()
    official_cfg = with_overrides(fast_cfg, {"sam.fast_encoder": False}, "model.")
    fast, official = build_ods_sam(fast_cfg).eval(), build_ods_sam(official_cfg).eval()
    assert type(fast.segmenter.image_encoder) is not type(official.segmenter.image_encoder)
    assert list(fast.segmenter.state_dict()) == list(official.segmenter.state_dict())
    x, _, _ = fast.preprocess(random_images([(100, 140)], seed=4))
    torch.testing.assert_close(fast.encode(x)[0], official.encode(x)[0], rtol=1e-4, atol=1e-4)
