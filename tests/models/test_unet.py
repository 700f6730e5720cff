"""The ``unet`` baseline (no SAM): shapes, gradients, checkpoints, encoder weights, config, profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from odssam.checkpoint import resumable_model_config
from odssam.config import ModelConfig, TrainConfig, load_config, to_dict, with_overrides
from odssam.engine.run_setup import trains_on_cache
from odssam.errors import OdsSamError
from odssam.models.baselines.unet import UnetBaseline, decoder_channels
from odssam.models.profiling import format_profile, profile_model
from odssam.models.registry import build_model

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TINY_ENCODER = "test_resnet"  # timm's tiny test ResNet (2.2 M parameters with the decoder below)


def unet_config(**changes) -> ModelConfig:
    """A CPU-sized ``unet``: timm's test ResNet, 64 px, decoder channels 32 .. 2."""
    settings = {"name": "unet", "unet.encoder": TINY_ENCODER, "unet.input_size": 64, "unet.decoder_width": 32}
    return with_overrides(ModelConfig(), {**settings, **changes}, "model.")


def build_tiny(seed: int = 0, **changes) -> UnetBaseline:
    torch.manual_seed(seed)
    return build_model(unet_config(**changes))


def imagenet_state_dict(seed: int = 1) -> dict[str, torch.Tensor]:
    """A state dict of the full timm test ResNet (classifier included), as an ImageNet file holds it."""
    torch.manual_seed(seed)
    return timm.create_model(TINY_ENCODER).state_dict()


def test_forward_gives_full_resolution_logits_without_nan():
    model = build_tiny().eval()
    assert isinstance(model, UnetBaseline) and model.segmenter is None
    assert (model.image_size, model.logit_size, model.prompt_input_size) == (64, 64, 64)
    assert model.preprocess_spec.resize == "stretch"
    images = [torch.randint(0, 256, (40, 56, 3), dtype=torch.uint8).numpy() for _ in range(2)]
    x, input_sizes, original_sizes = model.preprocess(images)
    assert x.shape == (2, 3, 64, 64) and input_sizes == [(64, 64)] * 2  # stretched: the image fills the input
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 1, 64, 64) and torch.isfinite(logits).all()
    maps = model.postprocess(logits, input_sizes, original_sizes)
    assert [tuple(m.shape) for m in maps] == [(1, 40, 56)] * 2


def test_there_is_nothing_frozen_or_cached():
    model = build_tiny()
    assert model.encode(torch.zeros(1, 3, 64, 64)) == ()
    assert model.frozen_fingerprint() == "none"
    assert len(model.trainable_parameters()) == len(list(model.parameters()))
    assert not trains_on_cache(TrainConfig(cache_embeddings=True), model)
    with pytest.raises(OdsSamError, match="no frozen segmenter"):
        model(torch.zeros(1, 3, 64, 64), image_embeddings=(torch.zeros(1, 256, 4, 4),))


def test_gradients_reach_every_parameter():
    model = build_tiny().train()
    # timm zero-initialises the last BatchNorm of each residual block (so a block starts as
    # the identity), which blocks the block's gradients at the first step only: start from one.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    x = torch.randn(2, 3, 64, 64)
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    torch.nn.functional.binary_cross_entropy_with_logits(model(x), target).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_channels_last_gives_the_same_logits():
    model = build_tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        after = model.set_channels_last(True)(x)
    assert model.network.encoder.model.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_a_saved_state_dict_loads_strictly_into_a_fresh_model(tmp_path):
    trained = build_tiny(seed=0).eval()
    path = tmp_path / "unet.pt"
    torch.save(trained.trainable.state_dict(), path)
    fresh = build_tiny(seed=1).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.equal(fresh(x), trained(x))
        fresh.trainable.load_state_dict(torch.load(path, weights_only=True), strict=True)
        torch.testing.assert_close(fresh(x), trained(x))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_encoder_weights_by_path_fill_the_encoder_and_skip_the_classifier(tmp_path, suffix):
    state = imagenet_state_dict()
    path = tmp_path / f"test_resnet{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)  # nested, as training scripts save it
    model = build_tiny(**{"unet.weights": str(path)})
    encoder = model.network.encoder.model.state_dict()
    assert "fc.weight" in state and "fc.weight" not in encoder
    assert all(torch.equal(encoder[key], state[key]) for key in encoder)
    assert model.trainable.weights_description.startswith(f"timm {TINY_ENCODER} ImageNet weights from {path}")
    # A model rebuilt from an odssam checkpoint does not read the file again.
    path.unlink()
    assert build_model(unet_config(**{"unet.weights": str(path)}), feature_encoder_weights=False) is not None


def test_encoder_weights_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    torch.manual_seed(0)
    other = tmp_path / "resnet10t.pth"
    torch.save(timm.create_model("resnet10t").state_dict(), other)
    with pytest.raises(OdsSamError, match=r"resnet10t\.pth: does not fit the timm encoder 'test_resnet'.*shape mismatches"):
        build_tiny(**{"unet.weights": str(other)})
    partial = tmp_path / "partial.pth"
    state = imagenet_state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")} | {"extra.weight": torch.zeros(1)}, partial)
    with pytest.raises(OdsSamError, match=r"missing keys \(layer4\..*unexpected keys \(extra\.weight\)"):
        build_tiny(**{"unet.weights": str(partial)})
    with pytest.raises(OdsSamError, match=r"not found.*model\.unet\.weights"):
        build_tiny(**{"unet.weights": str(tmp_path / "absent.pth")})


def test_auto_weights_are_refused_naming_the_file_to_fetch():
    with pytest.raises(OdsSamError, match=r"model\.unet\.weights: 'auto'.*no digest.*timm/resnet34\.a1_in1k"):
        build_model(unet_config(**{"unet.encoder": "resnet34", "unet.weights": "auto"}))


def test_bad_unet_config_values_are_refused_at_load():
    with pytest.raises(OdsSamError, match=r"model\.unet\.input_size: got 100; expected .*a multiple of 32"):
        unet_config(**{"unet.input_size": 100})
    with pytest.raises(OdsSamError, match=r"model\.unet\.resize: got 'crop'; expected one of longest_side, stretch"):
        unet_config(**{"unet.resize": "crop"})
    with pytest.raises(OdsSamError, match=r"model\.unet\.encoder: 'not_a_net' is not a timm model"):
        build_tiny(**{"unet.encoder": "not_a_net"})


def test_decoder_width_halves_over_the_five_stages():
    assert decoder_channels(256) == (256, 128, 64, 32, 16)  # smp's default
    assert decoder_channels(32) == (32, 16, 8, 4, 2)


def test_kvasir_config_builds_a_resnet34_unet_at_352():
    cfg = load_config(CONFIG_DIR / "baselines" / "kvasir_unet.yaml")
    assert (cfg.model.name, cfg.model.unet.encoder, cfg.model.unet.input_size) == ("unet", "resnet34", 352)
    kvasir = load_config(CONFIG_DIR / "kvasir.yaml")
    assert (cfg.data, cfg.train) == (kvasir.data, kvasir.train)  # the same data and recipe as ODS-SAM's
    with torch.device("meta"):
        model = build_model(cfg.model)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(24.44e6, rel=1e-3)


def test_profile_counts_everything_as_learnable():
    report = profile_model(unet_config())
    learnable = report["learnable"]
    assert report["frozen"] == [] and report["input_size"] == 64
    assert learnable["params"] == sum(p.numel() for p in build_tiny().parameters())
    children = {child["name"]: child for child in learnable["children"]}
    assert set(children) == {"encoder", "decoder", "segmentation_head"}
    assert sum(child["params"] for child in children.values()) == learnable["params"]
    assert children["encoder"]["flops"] > 0 and children["decoder"]["flops"] > 0
    assert "unet profile: no frozen segmenter, input at 64" in format_profile(report)


def test_resuming_compares_the_model_config_without_the_starting_weights():
    started = to_dict(unet_config(**{"unet.weights": "/elsewhere/resnet.pth"}))
    assert resumable_model_config(started) == resumable_model_config(to_dict(unet_config()))
    assert resumable_model_config(started) != resumable_model_config(to_dict(unet_config(**{"unet.input_size": 96})))


def test_bf16_autocast_inference_follows_fp32():
    # The precision CUDA runs use by default (train.precision: auto), here on the CPU.
    from odssam.inference.batch import predict_probabilities

    model = build_tiny().eval()
    images = [torch.randint(0, 256, (48, 40, 3), dtype=torch.uint8).numpy()]
    full = predict_probabilities(model, images)[0]
    half = predict_probabilities(model, images, amp_dtype=torch.bfloat16)[0]
    assert half.shape == full.shape == (48, 40)
    assert abs(half - full).max() < 0.05
