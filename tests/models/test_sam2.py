"""SAM 2 behind the frozen-segmenter seam: the official ``sam2`` modules, tiny random-weight variants."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, random_rgb, tiny_model_config

from odssam.config import SamConfig, with_overrides
from odssam.errors import OdsSamError
from odssam.models.ods_sam import build_ods_sam
from odssam.models.registry import SEGMENTER_VARIANTS, build_segmenter
from odssam.models.sam2 import SAM2_VARIANTS, Sam2Segmenter, build_sam2_model
from odssam.models.transforms import sam_preprocess

SIZE = 128  # 8x8 prompt grid, 32x32 logits: fast on a CPU
MICRO_VARIANTS = ["sam2_hiera_micro", "sam2.1_hiera_micro"]


def micro(variant: str = "sam2_hiera_micro", **fields) -> Sam2Segmenter:
    torch.set_num_threads(1)
    return build_segmenter(SamConfig(variant=variant, image_size=SIZE, **fields))


@pytest.fixture(scope="module")
def segmenter() -> Sam2Segmenter:
    return micro()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def test_every_sam2_variant_is_registered():
    official = {f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("t", "s", "b+", "l")}
    assert official | set(MICRO_VARIANTS) == set(SAM2_VARIANTS)
    assert all(SEGMENTER_VARIANTS[name] == "odssam.models.sam2:build_sam2_segmenter" for name in SAM2_VARIANTS)


@pytest.mark.parametrize("variant", MICRO_VARIANTS)
def test_shapes_and_finite_values(variant, images):
    segmenter = micro(variant)
    embedding = segmenter.encode(images)
    assert segmenter.embedding_shapes() == ((256, 8, 8), (32, 32, 32), (64, 16, 16))
    assert [tuple(part.shape[1:]) for part in embedding] == list(segmenter.embedding_shapes())
    assert (segmenter.embedding_size, segmenter.logit_size) == (8, 32)
    logits = segmenter.decode(embedding, torch.randn(2, 256, 8, 8))
    assert logits.shape == (2, 1, 32, 32)
    assert all(torch.isfinite(part).all() for part in (*embedding, logits))
    assert segmenter.preprocess_spec.resize == "stretch" and segmenter.image_size == SIZE


def test_the_official_checkpoint_layouts_are_built(segmenter):
    keys = segmenter.model.state_dict()
    assert any(key.startswith("memory_attention.") for key in keys)  # full SAM2Base: strict loading
    assert "no_obj_embed_spatial" not in keys
    assert "no_obj_embed_spatial" in micro("sam2.1_hiera_micro").model.state_dict()


def test_encode_equals_the_official_image_predictor(segmenter, rng):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pictures = [random_rgb(rng, 97, 143), random_rgb(rng, 300, 200)]
    predictor = SAM2ImagePredictor(segmenter.model)
    predictor._bb_feat_sizes = [(SIZE // 4,) * 2, (SIZE // 8,) * 2, (SIZE // 16,) * 2]  # it assumes S = 1024
    predictor.set_image_batch(pictures)
    official = (predictor._features["image_embed"], *predictor._features["high_res_feats"])
    x, _, _ = sam_preprocess(pictures, segmenter.preprocess_spec)
    for ours, theirs in zip(segmenter.encode(x), official):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_preprocessing_equals_the_official_sam2_transforms(segmenter, rng):
    from sam2.utils.transforms import SAM2Transforms

    pictures = [random_rgb(rng, 97, 143), random_rgb(rng, SIZE, SIZE), random_rgb(rng, 301, 64)]
    x, input_sizes, original_sizes = sam_preprocess(pictures, segmenter.preprocess_spec)
    official = SAM2Transforms(resolution=SIZE, mask_threshold=0.0).forward_batch(pictures)
    torch.testing.assert_close(x, official, rtol=0, atol=1e-5)
    assert input_sizes == [(SIZE, SIZE)] * 3 and original_sizes == [(97, 143), (SIZE, SIZE), (301, 64)]


def test_a_batch_equals_single_images(segmenter, images):
    prompt = torch.randn(2, 256, 8, 8, generator=torch.Generator().manual_seed(1))
    batched = segmenter.decode(segmenter.encode(images), prompt)
    for index in range(2):
        single = segmenter.decode(segmenter.encode(images[index : index + 1]), prompt[index : index + 1])
        torch.testing.assert_close(batched[index : index + 1], single, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(batched[0], batched[1])


def test_gradients_reach_every_prompt_encoder_parameter_and_no_frozen_one():
    changes = {"sam.variant": "sam2_hiera_micro", "sam.image_size": SIZE, "prompt_encoder.input_size": SIZE // 2}
    cfg = with_overrides(tiny_model_config(), changes, "model.")
    torch.manual_seed(0)
    model = build_ods_sam(cfg).train()
    assert not model.segmenter.training
    x = torch.randn(2, 3, SIZE, SIZE)
    logits = model(x)
    assert logits.shape == (2, 1, SIZE // 4, SIZE // 4)
    (logits**2).mean().backward()
    missing = [name for name, p in model.prompt_encoder.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
    assert all(not p.requires_grad and p.grad is None for p in model.segmenter.parameters())


def test_dynamic_multimask_is_a_switch_that_picks_among_the_decoders_masks(images):
    plain, dynamic = micro(), micro(dynamic_multimask=True)
    assert (plain.dynamic_multimask, dynamic.dynamic_multimask) == (False, True)
    embedding = plain.encode(images)
    prompt = torch.randn(2, 256, 8, 8, generator=torch.Generator().manual_seed(2))
    single = plain.decode(embedding, prompt)
    chosen = dynamic.decode(embedding, prompt)
    decoder = plain.model.sam_mask_decoder
    multi, _, _, _ = decoder(
        image_embeddings=embedding[0], image_pe=plain.model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=embedding[0].new_zeros((2, 0, 256)), dense_prompt_embeddings=prompt,
        multimask_output=True, repeat_image=False, high_res_features=list(embedding[1:]),
    )
    for index in range(2):
        candidates = [single[index, 0], *multi[index]]
        assert any(torch.allclose(chosen[index, 0], c, atol=1e-5) for c in candidates)
    # Random weights give unstable single masks: the switch changes the output.
    assert not torch.allclose(chosen, single)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("variant", MICRO_VARIANTS)
def test_an_official_layout_checkpoint_round_trips_strictly(variant, tmp_path, images):
    torch.manual_seed(3)
    original = Sam2Segmenter(build_sam2_model(variant, image_size=SIZE), variant)
    path = tmp_path / "sam2_micro.pt"
    torch.save({"model": original.model.state_dict()}, path)  # as the official files
    loaded = build_segmenter(SamConfig(variant=variant, image_size=SIZE, checkpoint=str(path), init_seed=99))
    assert loaded.weights_source == str(path)
    assert loaded.weights_fingerprint() == original.weights_fingerprint()
    prompt = torch.randn(2, 256, 8, 8)
    torch.testing.assert_close(loaded.decode(loaded.encode(images), prompt), original.decode(original.encode(images), prompt))


def test_a_checkpoint_of_another_variant_is_a_clear_error(segmenter, tmp_path):
    path = tmp_path / "sam2_micro.pt"
    torch.save({"model": segmenter.model.state_dict()}, path)
    with pytest.raises(OdsSamError, match=r"looks like a sam2_hiera_micro checkpoint but model.sam.variant is sam2.1_hiera_micro"):
        build_segmenter(SamConfig(variant="sam2.1_hiera_micro", image_size=SIZE, checkpoint=str(path)))


def test_a_sam_checkpoint_is_not_a_sam2_one(tmp_path):
    path = tmp_path / "sam_vit.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 8, 8, 32)}, path)
    with pytest.raises(OdsSamError, match="holds no SAM 2 image encoder"):
        micro(checkpoint=str(path))
    torch.save({"model": {"weights": [1, 2]}}, path)
    with pytest.raises(OdsSamError, match="not tensors"):
        micro(checkpoint=str(path))


def test_auto_checkpoints_are_refused_with_the_official_address():
    with pytest.raises(OdsSamError, match=r"no digest.*segment_anything_2/072824/sam2_hiera_large\.pt"):
        build_segmenter(SamConfig(variant="sam2_hiera_l", checkpoint="auto"))
    with pytest.raises(OdsSamError, match="092824/sam2.1_hiera_base_plus.pt"):
        build_segmenter(SamConfig(variant="sam2.1_hiera_b+", checkpoint="auto"))
    with pytest.raises(OdsSamError, match="no official checkpoint exists for SAM 2 variant 'sam2_hiera_micro'"):
        micro(checkpoint="auto")


def test_image_size_must_be_a_multiple_of_32():
    with pytest.raises(OdsSamError, match=r"model.sam.image_size must be a positive multiple of 32 for SAM 2.*144"):
        build_segmenter(SamConfig(variant="sam2_hiera_micro", image_size=144))


def test_fingerprint_follows_the_weights_that_shape_the_embedding():
    segmenter = micro()
    before = segmenter.weights_fingerprint()
    model = segmenter.model
    with torch.no_grad():
        model.sam_mask_decoder.iou_prediction_head.layers[0].weight.add_(1.0)  # decoder only: same embedding
        model.memory_attention.layers[0].linear1.weight.add_(1.0)
    assert segmenter.weights_fingerprint() == before
    for parameter in (model.image_encoder.trunk.pos_embed, model.sam_mask_decoder.conv_s0.weight,
                      model.sam_mask_decoder.conv_s1.bias, model.no_mem_embed):
        with torch.no_grad():
            parameter.add_(1.0)
        assert segmenter.weights_fingerprint() != before
        before = segmenter.weights_fingerprint()


def test_odssam_does_not_import_sam2_until_a_sam2_variant_is_built():
    script = (
        "import sys\n"
        "import odssam.cli.main, odssam.config, odssam.models.registry, odssam.models.sam2\n"
        "assert 'sam2' not in sys.modules, 'sam2 imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT / "src")))
    assert done.returncode == 0, done.stderr[-2000:]


def test_without_the_sam2_package_a_sam2_variant_says_how_to_install_it(monkeypatch):
    for missing in ("sam2", "omegaconf", "hydra"):  # importing them now raises ImportError
        monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(OdsSamError, match="install it with SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2"):
        micro()


def test_random_weights_come_from_the_init_seed():
    first, second = micro(init_seed=5), micro(init_seed=5)
    assert first.weights_fingerprint() == second.weights_fingerprint() != micro(init_seed=6).weights_fingerprint()


def test_images_of_any_size_are_stretched(segmenter):
    picture = np.full((40, 90, 3), 200, dtype=np.uint8)
    x, input_sizes, _ = sam_preprocess([picture], segmenter.preprocess_spec)
    assert x.shape == (1, 3, SIZE, SIZE) and input_sizes == [(SIZE, SIZE)]
    assert torch.allclose(x[0, 0], x[0, 0, 0, 0])  # a flat image stays flat: nothing padded


def test_sam2_profiles_like_sam():
    # Hiera's constructor reads tensor values: the shape-only profiler must still build it.
    from odssam.models.profiling import profile_model

    cfg = with_overrides(tiny_model_config(), {"sam": {"variant": "sam2_hiera_micro", "image_size": 256}})
    report = profile_model(cfg)
    frozen = {part["name"]: part for part in report["frozen"]}
    assert frozen["model.image_encoder"]["flops"] > 0 and frozen["model.sam_mask_decoder"]["flops"] > 0
    assert report["learnable"]["params"] == sum(p.numel() for p in build_ods_sam(cfg).prompt_encoder.parameters())
