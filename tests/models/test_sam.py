"""The frozen SAM: registry, builder, checkpoint loading and weight fingerprint."""

import pytest
import torch
from segment_anything import sam_model_registry

from odssam.errors import OdsSamError
from odssam.models.fast_encoder import accelerate_image_encoder
from odssam.models.sam import (
    SAM_REGISTRY,
    SamSpec,
    build_sam,
    describe_sam_state_dict,
    freeze_sam,
    list_sam_variants,
    load_sam_checkpoint,
    sam_weights_fingerprint,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _assert_frozen(sam: torch.nn.Module) -> None:
    assert not any(p.requires_grad for p in sam.parameters())
    assert not any(module.training for module in sam.modules())


def test_registry_holds_the_official_shapes_and_test_configs():
    assert list_sam_variants() == ["vit_h", "vit_l", "vit_b", "vit_tiny", "vit_micro"]
    assert SAM_REGISTRY["vit_h"] == SamSpec(1280, 32, 16, (7, 15, 23, 31))
    assert SAM_REGISTRY["vit_l"] == SamSpec(1024, 24, 16, (5, 11, 17, 23))
    assert SAM_REGISTRY["vit_b"] == SamSpec(768, 12, 12, (2, 5, 8, 11))


@pytest.mark.parametrize("variant", list(SAM_REGISTRY))
def test_every_variant_builds_frozen_with_its_spec(variant):
    with torch.device("meta"):
        sam = build_sam(variant)
    _assert_frozen(sam)
    assert describe_sam_state_dict(sam.state_dict()) == (SAM_REGISTRY[variant], 1024)
    assert sam.prompt_encoder.image_embedding_size == (64, 64)


@pytest.mark.parametrize("variant", ["vit_h", "vit_l", "vit_b"])
def test_parameter_counts_equal_the_official_builder(variant):
    with torch.device("meta"):
        ours = build_sam(variant)
        official = sam_model_registry[variant]()
    for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
        assert _count(getattr(ours, part)) == _count(getattr(official, part)), part
    assert repr(ours) == repr(official)


def test_vit_h_sizes_match_the_published_ones():
    with torch.device("meta"):
        sam = build_sam("vit_h")
    assert _count(sam.image_encoder) / 1e6 == pytest.approx(637.0, abs=0.05)
    assert _count(sam.mask_decoder) / 1e6 == pytest.approx(4.06, abs=0.005)


@pytest.mark.parametrize(("variant", "image_size"), [("vit_micro", 256), ("vit_tiny", 256), ("vit_micro", 128)])
def test_small_forward_shapes(variant, image_size):
    sam = build_sam(variant, image_size=image_size)
    grid = image_size // 16
    with torch.no_grad():
        embedding = sam.image_encoder(torch.randn(2, 3, image_size, image_size))
        sparse, dense = sam.prompt_encoder(points=None, boxes=None, masks=None)
        logits, iou = sam.mask_decoder(
            image_embeddings=embedding[:1],
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    assert embedding.shape == (2, 256, grid, grid)
    assert dense.shape == (1, 256, grid, grid)
    assert logits.shape == (1, 1, 4 * grid, 4 * grid)
    assert iou.shape == (1, 1)


def test_gradients_flow_through_the_frozen_decoder_into_the_dense_prompt():
    sam = build_sam("vit_micro", image_size=128)
    embedding = torch.randn(1, 256, 8, 8)
    dense = torch.randn(1, 256, 8, 8, requires_grad=True)
    sparse = torch.empty(1, 0, 256)
    logits, _ = sam.mask_decoder(embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense, False)
    logits.sum().backward()
    assert dense.grad is not None and dense.grad.abs().sum() > 0
    assert all(p.grad is None for p in sam.parameters())


@pytest.mark.parametrize("image_size", [1000, 0, -16, 256.0])
def test_image_size_must_be_a_positive_multiple_of_16(image_size):
    with pytest.raises(OdsSamError, match="multiple of 16"):
        build_sam("vit_micro", image_size=image_size)


def test_unknown_variant_names_the_valid_ones():
    with pytest.raises(OdsSamError, match="vit_h, vit_l, vit_b"):
        build_sam("vit_g")


def test_freeze_sam_freezes_a_model_in_training_mode():
    sam = build_sam("vit_micro", image_size=128).train().requires_grad_(True)
    assert freeze_sam(sam) is sam
    _assert_frozen(sam)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_deterministic_and_tracks_encoder_weights_only():
    torch.manual_seed(1)
    first = build_sam("vit_micro", image_size=128)
    torch.manual_seed(1)
    second = build_sam("vit_micro", image_size=128)
    assert sam_weights_fingerprint(first) == sam_weights_fingerprint(second)
    assert len(sam_weights_fingerprint(first)) == 16

    with torch.no_grad():
        second.mask_decoder.iou_token.weight.add_(1.0)
    assert sam_weights_fingerprint(first) == sam_weights_fingerprint(second)

    with torch.no_grad():
        second.image_encoder.neck[0].weight.view(-1)[0] += 1e-3
    assert sam_weights_fingerprint(first) != sam_weights_fingerprint(second)


def test_fingerprint_depends_on_the_image_size():
    torch.manual_seed(1)
    small = build_sam("vit_micro", image_size=128)
    torch.manual_seed(1)
    large = build_sam("vit_micro", image_size=256)
    assert sam_weights_fingerprint(small) != sam_weights_fingerprint(large)


# --------------------------------------------------------------------------- checkpoints


def _save_state(sam, path):
    torch.save(sam.state_dict(), path)
    return path


def test_checkpoint_round_trip_through_build_and_load(tmp_path):
    source = build_sam("vit_micro", image_size=128)
    path = _save_state(source, tmp_path / "micro.pth")

    built = build_sam("vit_micro", checkpoint=path, image_size=128)
    loaded = load_sam_checkpoint(build_sam("vit_micro", image_size=128), path)
    for model in (built, loaded):
        _assert_frozen(model)
        assert sam_weights_fingerprint(model) == sam_weights_fingerprint(source)
        loaded = model.state_dict()
        for key, value in source.state_dict().items():
            assert torch.equal(loaded[key], value), key
        assert torch.equal(model.pixel_mean, source.pixel_mean) and torch.equal(model.pixel_std, source.pixel_std)


def test_wrong_variant_is_named(tmp_path):
    path = _save_state(build_sam("vit_tiny", image_size=128), tmp_path / "tiny.pth")
    with pytest.raises(OdsSamError) as error:
        build_sam("vit_micro", checkpoint=path, image_size=128)
    message = str(error.value)
    assert "looks like a vit_tiny checkpoint but the variant is vit_micro" in message
    assert str(path) in message and "unexpected keys" in message and "shape mismatches" in message


def test_official_vit_b_checkpoint_is_recognised_in_a_vit_h_model(tmp_path):
    with torch.device("meta"):
        official_b = sam_model_registry["vit_b"]()
        vit_h = build_sam("vit_h")
    path = tmp_path / "sam_vit_b_like.pth"
    # The variant check reads shapes only, so broadcast scalars of the right shapes suffice.
    torch.save({key: torch.zeros(()).expand(value.shape) for key, value in official_b.state_dict().items()}, path)
    with pytest.raises(OdsSamError, match="looks like a vit_b checkpoint but the variant is vit_h"):
        load_sam_checkpoint(vit_h, path)


def test_image_size_mismatch_is_named(tmp_path):
    path = _save_state(build_sam("vit_micro", image_size=256), tmp_path / "micro256.pth")
    with pytest.raises(OdsSamError, match="made for image_size 256 but the model has image_size 128"):
        build_sam("vit_micro", checkpoint=path, image_size=128)


def test_prefixed_keys_are_explained(tmp_path):
    state = {f"module.{key}": value for key, value in build_sam("vit_micro", image_size=128).state_dict().items()}
    path = tmp_path / "ddp.pth"
    torch.save(state, path)
    with pytest.raises(OdsSamError, match="prefix 'module.'"):
        build_sam("vit_micro", checkpoint=path, image_size=128)


class _Payload:
    """A pickled object whose unpickling would leave a trace if it ever ran."""

    unpickled = False

    def __setstate__(self, state):
        type(self).unpickled = True


def test_pickled_objects_other_than_tensors_are_refused(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1), "extra": _Payload()}, path)
    with pytest.raises(OdsSamError) as error:
        build_sam("vit_micro", checkpoint=path, image_size=128)
    message = str(error.value)
    assert str(path) in message and "weights_only=True" in message and "_Payload" in message
    assert not _Payload.unpickled


def test_truncated_file_is_reported(tmp_path):
    full = _save_state(build_sam("vit_micro", image_size=128), tmp_path / "full.pth")
    data = full.read_bytes()
    truncated = tmp_path / "sam_vit_b_01ec64.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(OdsSamError) as error:
        build_sam("vit_micro", checkpoint=truncated, image_size=128)
    message = str(error.value)
    assert "truncated or corrupt" in message and str(truncated) in message
    assert "375042383 bytes: download it again" in message


def test_garbage_and_empty_files_are_reported(tmp_path):
    for name, content in (("garbage.pth", b"not a checkpoint at all"), ("empty.pth", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(OdsSamError, match="truncated or corrupt"):
            build_sam("vit_micro", checkpoint=path, image_size=128)


def test_files_that_are_not_state_dicts_are_reported(tmp_path):
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(OdsSamError, match="not a SAM state dict: it holds a list"):
        build_sam("vit_micro", checkpoint=listing, image_size=128)

    nested = tmp_path / "nested.pth"
    torch.save({"model": build_sam("vit_micro", image_size=128).state_dict(), "epoch": 3}, nested)
    with pytest.raises(OdsSamError, match="torch.save that entry alone"):
        build_sam("vit_micro", checkpoint=nested, image_size=128)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(OdsSamError, match="not found"):
        build_sam("vit_micro", checkpoint=tmp_path / "absent.pth", image_size=128)


# --------------------------------------------------------------------------- official builder parity


def _randomised_official_vit_b_state():
    """State of the official ViT-B with its zero-initialised tensors (pos_embed, rel_pos) made random."""
    official = sam_model_registry["vit_b"]()
    state = official.state_dict()
    for key, value in state.items():
        if value.is_floating_point() and not value.any():
            state[key] = torch.randn_like(value) * 0.02
    official.load_state_dict(state)
    return official, state


def test_official_vit_b_state_dict_loads_strictly_and_gives_identical_outputs(tmp_path):
    official, state = _randomised_official_vit_b_state()
    path = tmp_path / "official_vit_b.pth"
    torch.save(state, path)
    ours = build_sam("vit_b", checkpoint=path)

    loaded = ours.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key

    # A full 1024x1024 input, through the official module, ours, and the fused-attention
    # encoder odssam uses by default (same weights, its own attention code).
    image = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        expected_embedding = official.image_encoder(image)
        embedding = ours.image_encoder(image)
        fast_embedding = accelerate_image_encoder(ours.image_encoder)(image)
    assert embedding.shape == (1, 256, 64, 64)
    torch.testing.assert_close(embedding, expected_embedding)
    torch.testing.assert_close(fast_embedding, expected_embedding, rtol=1e-4, atol=1e-4)

    image_embedding = torch.randn(1, 256, 64, 64)
    dense_prompt = torch.randn(1, 256, 64, 64)
    points = (torch.tensor([[[100.0, 300.0], [700.0, 500.0]]]), torch.tensor([[1, 0]]))
    outputs = []
    with torch.no_grad():
        for model in (official, ours):
            sparse, _ = model.prompt_encoder(points=points, boxes=None, masks=None)
            image_pe = model.prompt_encoder.get_dense_pe()
            outputs.append(model.mask_decoder(image_embedding, image_pe, sparse, dense_prompt, True))
    (expected_masks, expected_iou), (masks, iou) = outputs
    assert masks.shape == (1, 3, 256, 256)
    torch.testing.assert_close(masks, expected_masks)
    torch.testing.assert_close(iou, expected_iou)
