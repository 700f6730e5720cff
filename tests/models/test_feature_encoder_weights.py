"""Starting weights of the feature encoder: key mapping, strict loading, auto download, trained checkpoints."""

from __future__ import annotations

import datetime
import hashlib
import re
from pathlib import Path

import pytest
import timm
import torch
from efficientvit_sam_layout import L1, TINY, image_encoder_keys, read_fixture, save_release_checkpoint
from helpers import checkpoint_payload, free_port, tiny_model_config
from safetensors.torch import save_file

from odssam.cli.main import main
from odssam.config import (
    ExperimentConfig,
    FeatureEncoderConfig,
    PromptEncoderConfig,
    from_dict,
    to_dict,
    with_overrides,
)
from odssam.checkpoint import load_model_from_checkpoint, resumable_model_config, save_checkpoint
from odssam.errors import OdsSamError
from odssam.models import feature_encoder_weights
from odssam.models.checkpoints import Digest, default_cache_dir
from odssam.models.feature_encoder import FeatureEncoder
from odssam.models.feature_encoder_weights import (
    PUBLISHED_WEIGHTS,
    PublishedWeights,
    initialise_feature_encoder,
    map_efficientvit_sam_key,
    map_timm_key,
)
from odssam.models.ods_sam import build_ods_sam
from odssam.models.prompt_encoder import build_prompt_encoder
from odssam.models.sam import build_sam

FIXTURE = Path(__file__).parent / "data" / "efficientvit_sam_l1_image_encoder.txt"
SAM_NECK = {"upsample_mode": "bicubic", "norm_eps": 1e-6}
TINY_ENCODER = {"backbone": "efficientvit_tiny", "neck_blocks": 1}


def tiny_sam_cfg(checkpoint) -> FeatureEncoderConfig:
    """The tiny feature encoder, set up as EfficientViT-SAM weights require."""
    return FeatureEncoderConfig(**TINY_ENCODER, **SAM_NECK, checkpoint=str(checkpoint) if checkpoint else None)


AUTO_TINY = PromptEncoderConfig(input_size=64, feature_encoder=tiny_sam_cfg("auto"))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


@pytest.fixture
def tiny_release(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A synthetic EfficientViT-SAM release file for the tiny encoder (nested under "state_dict")."""
    path = tmp_path / "efficientvit_sam_tiny.pt"
    return path, save_release_checkpoint(path, TINY)


# --------------------------------------------------------------------------- key mapping


def test_the_published_l1_entry_is_the_official_release():
    published = PUBLISHED_WEIGHTS["efficientvit_sam_l1"]
    assert published.url == "https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main/efficientvit_sam_l1.pt"
    assert published.file_name == "efficientvit_sam_l1.pt"
    assert published.digest == Digest("sha256", "fa151df2b9b96896accd505470755cdd293a4c50cdabac95478f3fbd86d9152b")
    assert (published.backbone, published.neck_blocks) == ("efficientvit_l1", 8)


def test_mapping_covers_the_official_l1_image_encoder_exactly():
    official = read_fixture(FIXTURE)
    assert official == image_encoder_keys(**L1)  # the fixture is what the layout module describes
    ours = {key: tuple(value.shape) for key, value in FeatureEncoder(FeatureEncoderConfig()).state_dict().items()}
    mapped = {map_efficientvit_sam_key(name): shape for name, shape in official}
    assert None not in mapped and len(mapped) == len(official)  # every key has a rule, no two collide
    assert mapped == ours  # same names and shapes, nothing left over on either side
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    parameters = sum(torch.Size(shape).numel() for name, shape in official if not name.endswith(statistics))
    assert parameters == 43_585_568


def test_mapping_spot_checks():
    # The official neck lists its inputs coarsest first; ours finest first.
    assert map_efficientvit_sam_key("image_encoder.neck.input_ops.0.op_list.0.conv.weight") == "neck.lateral.2.0.weight"
    assert map_efficientvit_sam_key("image_encoder.neck.input_ops.2.op_list.0.norm.running_var") == (
        "neck.lateral.0.1.running_var"
    )
    assert map_efficientvit_sam_key("image_encoder.backbone.stages.0.op_list.1.main.conv1.conv.weight") == (
        "backbone.stem.res0.main.conv1.conv.weight"
    )
    attention = "context_module.main.qkv.conv.weight"
    assert map_efficientvit_sam_key(f"image_encoder.backbone.stages.4.op_list.3.{attention}") == (
        f"backbone.stages.3.blocks.3.{attention}"
    )
    assert map_efficientvit_sam_key("image_encoder.neck.output_ops.0.op_list.0.conv.bias") == "neck.proj.bias"
    assert map_efficientvit_sam_key("image_encoder.norm.weight") == "neck.norm.weight"
    assert map_efficientvit_sam_key("image_encoder.neck.input_ops.0.op_list.1.weight") is None
    assert map_timm_key("stages.0.blocks.0.main.spatial_conv.conv.weight") == (
        "backbone.stages.0.blocks.0.main.spatial_conv.conv.weight"
    )
    assert map_timm_key("head.classifier.4.weight") is None


# --------------------------------------------------------------------------- loading


def test_a_release_checkpoint_loads_everything_and_changes_the_output(tiny_release):
    path, state = tiny_release
    torch.manual_seed(0)
    encoder = FeatureEncoder(tiny_sam_cfg(path)).eval()
    x = torch.randn(2, 3, 64, 64)
    before = encoder(x)
    description = initialise_feature_encoder(encoder, encoder_cfg := tiny_sam_cfg(path))
    assert "EfficientViT-SAM" in description and str(path) in description and encoder_cfg.checkpoint == str(path)
    loaded = encoder.state_dict()
    for name, tensor in state.items():
        ours = map_efficientvit_sam_key(name)
        if ours is not None:
            assert torch.equal(loaded[ours], tensor), name
    assert len([n for n in state if map_efficientvit_sam_key(n)]) == len(loaded)
    after = encoder(x)
    assert torch.isfinite(after).all() and not torch.allclose(before, after)
    # EfficientViT-SAM's norm epsilon reached every norm.
    assert encoder.neck.norm.eps == 1e-6 and encoder.neck.lateral[0][1].eps == 1e-6
    assert encoder.backbone.stem.in_conv.norm.eps == 1e-6


def test_a_flat_release_state_dict_loads_too(tmp_path):
    path = tmp_path / "flat.pth"
    state = save_release_checkpoint(path, TINY, nested=False)
    encoder = FeatureEncoder(tiny_sam_cfg(path))
    initialise_feature_encoder(encoder, tiny_sam_cfg(path))
    assert torch.equal(encoder.neck.proj.weight, state["image_encoder.neck.output_ops.0.op_list.0.conv.weight"])


@pytest.fixture(scope="module")
def timm_l1():
    """timm's own efficientvit_l1 (random weights) and its state dict."""
    torch.manual_seed(1)
    model = timm.create_model("efficientvit_l1", pretrained=False).eval()
    return model, model.state_dict()


@pytest.mark.parametrize("form", ["safetensors", "pth", "pth_nested"])
def test_a_timm_state_dict_loads_the_backbone_strictly(timm_l1, tmp_path, form):
    model, state = timm_l1
    if form == "safetensors":
        path = tmp_path / "efficientvit_l1.safetensors"
        save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    else:
        path = tmp_path / "efficientvit_l1.pth"
        torch.save({"model": state, "epoch": 300} if form == "pth_nested" else state, path)
    torch.manual_seed(0)
    cfg = FeatureEncoderConfig(checkpoint=str(path))
    encoder = FeatureEncoder(cfg).eval()
    neck_before = snapshot(encoder.neck)
    x = torch.randn(1, 3, 64, 64)
    before = encoder(x)
    assert "timm" in initialise_feature_encoder(encoder, cfg)
    after = encoder(x)
    assert not torch.allclose(before, after)
    for key, value in encoder.neck.state_dict().items():
        assert torch.equal(value, neck_before[key]), key  # the neck keeps its random weights
    with torch.no_grad():  # our backbone now computes timm's features
        assert torch.equal(encoder.backbone(x)[-1], model.forward_features(x))


# --------------------------------------------------------------------------- wrong files


def release_variant(tmp_path: Path, change) -> Path:
    """A tiny release file with ``change(state)`` applied."""
    path = tmp_path / "changed.pt"
    state = save_release_checkpoint(path, TINY)
    change(state)
    torch.save({"state_dict": state}, path)
    return path


def load_into_tiny(path, **overrides) -> None:
    cfg = FeatureEncoderConfig(**{**TINY_ENCODER, **SAM_NECK, **overrides, "checkpoint": str(path)})
    initialise_feature_encoder(FeatureEncoder(cfg), cfg)


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    dropped = "image_encoder.neck.middle.op_list.0.main.point_conv.conv.weight"
    path = release_variant(tmp_path, lambda state: state.pop(dropped))
    missing = r"1 missing keys \(neck\.blocks\.0\.main\.point_conv\.conv\.weight\)"
    with pytest.raises(OdsSamError, match=re.escape(str(path)) + ".*" + missing):
        load_into_tiny(path)

    extra = "image_encoder.neck.middle.op_list.1.main.point_conv.conv.weight"  # a second neck block
    path = release_variant(tmp_path, lambda state: state.update({extra: torch.zeros(256, 256, 1, 1)}))
    with pytest.raises(OdsSamError, match=r"unexpected keys \(neck\.blocks\.1\.main\.point_conv\.conv\.weight\)"):
        load_into_tiny(path)

    path = release_variant(tmp_path, lambda state: state.update({"image_encoder.extra.weight": torch.zeros(1)}))
    with pytest.raises(OdsSamError, match=r"unexpected keys \(image_encoder\.extra\.weight\)"):
        load_into_tiny(path)

    key = "image_encoder.neck.output_ops.0.op_list.0.conv.weight"
    path = release_variant(tmp_path, lambda state: state.update({key: torch.zeros(256, 128, 1, 1)}))
    with pytest.raises(OdsSamError, match=r"neck\.proj\.weight: file \(256, 128, 1, 1\) vs model \(256, 256, 1, 1\)"):
        load_into_tiny(path)

    # An L1 file is refused by the L0 structure (fewer attention blocks).
    with pytest.raises(OdsSamError, match="do not fit the feature encoder"):
        cfg = FeatureEncoderConfig(backbone="efficientvit_l0", **SAM_NECK)
        with torch.device("meta"):
            encoder = FeatureEncoder(cfg)
        path = tmp_path / "l1.pt"
        save_release_checkpoint(path, L1)
        initialise_feature_encoder(encoder, FeatureEncoderConfig(**{**vars(cfg), "checkpoint": str(path)}))


def test_missing_batch_norm_counters_are_allowed(tmp_path):
    path = release_variant(tmp_path, lambda state: [state.pop(k) for k in list(state) if "num_batches" in k])
    load_into_tiny(path)


def test_release_weights_require_their_neck_settings(tiny_release):
    path, _ = tiny_release
    with pytest.raises(OdsSamError, match=r"feature_encoder\.upsample_mode: bicubic \(now bilinear\)"):
        load_into_tiny(path, upsample_mode="bilinear")
    with pytest.raises(OdsSamError, match=r"feature_encoder\.norm_eps: 1\.0e-6 \(now None\)"):
        load_into_tiny(path, norm_eps=None)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: torch.save(build_sam("vit_micro", image_size=64).state_dict(), p), "this is a SAM checkpoint"),
        (lambda p: torch.save({"foo.weight": torch.zeros(2)}, p), "neither an EfficientViT-SAM checkpoint"),
        (lambda p: torch.save(torch.zeros(3), p), "not a feature-encoder state dict: it holds a tensor"),
        (lambda p: torch.save({"state_dict": {"stem.x": 3}}, p), "not a plain state dict"),
        (lambda p: torch.save({"when": datetime.date(2024, 1, 1)}, p), "refused: the file holds pickled Python"),
        (lambda p: torch.save({"format": "odssam", "version": 1}, p), "odssam training checkpoint"),
        (lambda p: p.write_bytes(b"not a checkpoint"), "truncated or corrupt"),
    ],
    ids=["sam", "random_dict", "tensor", "not_tensors", "pickled_object", "odssam_checkpoint", "garbage"],
)
def test_wrong_files_are_refused_clearly(tmp_path, write, message):
    path = tmp_path / "weights.pth"
    write(path)
    with pytest.raises(OdsSamError, match=message):
        load_into_tiny(path)


def test_a_truncated_release_file_is_refused(tiny_release, tmp_path):
    path, _ = tiny_release
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(OdsSamError, match=re.escape(f"{truncated}: truncated or corrupt")):
        load_into_tiny(truncated)
    safetensors_file = tmp_path / "broken.safetensors"
    safetensors_file.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(OdsSamError, match="truncated or corrupt"):
        load_into_tiny(safetensors_file)


def test_missing_paths_and_bad_settings(tmp_path):
    with pytest.raises(OdsSamError, match=r"feature encoder checkpoint not found: .*absent\.pt"):
        load_into_tiny(tmp_path / "absent.pt")
    with pytest.raises(OdsSamError, match="is not a file"):
        load_into_tiny(tmp_path)
    with pytest.raises(OdsSamError, match=r"norm_eps: got -1\.0; expected a number > 0"):  # refused at load
        FeatureEncoder(from_dict(FeatureEncoderConfig, {**TINY_ENCODER, "norm_eps": -1.0}))


# --------------------------------------------------------------------------- auto


@pytest.fixture
def served_release(served, monkeypatch, tmp_path):
    """A published entry for the tiny encoder whose file is served on 127.0.0.1."""
    folder, base_url, requests = served
    state = save_release_checkpoint(folder / "efficientvit_sam_tiny.pt", TINY)
    digest = Digest("sha256", hashlib.sha256((folder / "efficientvit_sam_tiny.pt").read_bytes()).hexdigest())
    entry = PublishedWeights(
        "efficientvit_sam_tiny", f"{base_url}/efficientvit_sam_tiny.pt",
        "efficientvit_sam_tiny.pt", digest, "efficientvit_tiny", 1,
    )
    monkeypatch.setitem(feature_encoder_weights.PUBLISHED_WEIGHTS, entry.name, entry)
    return entry, state, requests


def test_auto_downloads_once_verifies_and_loads(served_release):
    entry, state, requests = served_release
    first = build_prompt_encoder(AUTO_TINY, load_weights=True)
    second = build_prompt_encoder(AUTO_TINY, load_weights=True)
    cached = default_cache_dir() / entry.file_name
    assert len(requests) == 1 and cached.is_file()
    assert str(cached) in first.feature_encoder_weights
    expected = state["image_encoder.neck.input_ops.0.op_list.0.conv.weight"]
    for encoder in (first, second):
        assert torch.equal(encoder.feature_encoder.neck.lateral[2][0].weight, expected)


def test_auto_refuses_a_download_with_the_wrong_digest(served_release, monkeypatch):
    entry, _, _ = served_release
    wrong = PublishedWeights(**{**vars(entry), "digest": Digest("sha256", "0" * 64)})
    monkeypatch.setitem(feature_encoder_weights.PUBLISHED_WEIGHTS, entry.name, wrong)
    with pytest.raises(OdsSamError, match="failed verification"):
        build_prompt_encoder(AUTO_TINY, load_weights=True)
    assert not (default_cache_dir() / entry.file_name).exists()


def test_auto_without_network_says_where_to_get_the_file(served_release, monkeypatch):
    entry, _, _ = served_release
    offline = PublishedWeights(**{**vars(entry), "url": f"http://127.0.0.1:{free_port()}/efficientvit_sam_tiny.pt"})
    monkeypatch.setitem(feature_encoder_weights.PUBLISHED_WEIGHTS, entry.name, offline)
    with pytest.raises(OdsSamError) as error:
        build_prompt_encoder(AUTO_TINY, load_weights=True)
    message = str(error.value)
    assert offline.url in message and entry.digest.hexdigest in message
    assert "model.prompt_encoder.feature_encoder.checkpoint" in message and "null" in message


def test_auto_needs_published_weights_for_the_backbone():
    with pytest.raises(OdsSamError, match="no published weights fit backbone 'efficientvit_l2'"):
        cfg = FeatureEncoderConfig(backbone="efficientvit_l2", checkpoint="auto")
        initialise_feature_encoder(torch.nn.Module(), cfg)


# --------------------------------------------------------------------------- odssam weights


def test_weights_command_lists_downloads_and_verifies_feature_encoder_weights(served_release, tmp_path, capsys):
    entry, _, requests = served_release
    assert main(["weights", "list"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("efficientvit_sam_l1"))
    assert "fa151df2b9b96896accd505470755cdd293a4c50cdabac95478f3fbd86d9152b" in line and "not cached" in line

    assert main(["weights", "download", entry.name, "--dir", str(tmp_path / "d"), "--quiet"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "d" / entry.file_name and len(requests) == 1

    assert main(["weights", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "matches the published efficientvit_sam_tiny file" in out and "fit the feature encoder" in out
    assert main(["weights", "verify", str(path), "--digest", "sha256:" + "1" * 64]) == 2
    assert "expected " + "1" * 64 in capsys.readouterr().err


# --------------------------------------------------------------------------- trained checkpoints


def test_a_trained_checkpoint_loads_without_the_feature_encoder_file(tiny_release, tmp_path):
    path, _ = tiny_release
    cfg = ExperimentConfig(model=tiny_model_config())
    cfg = with_overrides(cfg, {"model.prompt_encoder.feature_encoder": tiny_sam_cfg(path)})
    model = build_ods_sam(cfg.model)
    assert "EfficientViT-SAM" in model.prompt_encoder.feature_encoder_weights
    with torch.no_grad():
        model.prompt_encoder.feature_encoder.neck.proj.bias.add_(1.0)  # "training" moved the weights
    run = save_checkpoint(tmp_path / "best.pt", checkpoint_payload(model, cfg))
    path.unlink()
    loaded, loaded_cfg = load_model_from_checkpoint(run)
    assert loaded_cfg.model.prompt_encoder.feature_encoder.checkpoint == str(path)
    for key, value in model.prompt_encoder.state_dict().items():
        assert torch.equal(loaded.prompt_encoder.state_dict()[key], value), key


def test_a_checkpoint_written_before_the_new_fields_still_loads(tmp_path):
    cfg = ExperimentConfig(model=tiny_model_config())
    model = build_ods_sam(cfg.model)
    payload = checkpoint_payload(model, cfg)
    for field in ("checkpoint", "norm_eps"):
        del payload["config"]["model"]["prompt_encoder"]["feature_encoder"][field]
    loaded, loaded_cfg = load_model_from_checkpoint(save_checkpoint(tmp_path / "old.pt", payload))
    assert loaded_cfg.model.prompt_encoder.feature_encoder.checkpoint is None
    for key, value in model.prompt_encoder.state_dict().items():
        assert torch.equal(loaded.prompt_encoder.state_dict()[key], value), key


def test_resume_compares_model_configs_without_the_starting_weights():
    new = ExperimentConfig(model=tiny_model_config()).model
    stored = resumable_model_config(to_dict(new))
    old = to_dict(new)
    for field in ("checkpoint", "norm_eps"):
        del old["prompt_encoder"]["feature_encoder"][field]
    assert resumable_model_config(old) == stored  # written before the fields existed
    started_from_a_file = to_dict(new)
    started_from_a_file["prompt_encoder"]["feature_encoder"]["checkpoint"] = "auto"
    assert resumable_model_config(started_from_a_file) == stored
    other = to_dict(new)
    other["prompt_encoder"]["feature_encoder"]["norm_eps"] = 1e-6
    assert resumable_model_config(other) != stored
