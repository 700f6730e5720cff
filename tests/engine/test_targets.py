"""train.loss_resolution: targets, batching and the loss at logits, input or label resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from engine_helpers import blob_sample, graph_reason
from helpers import save_image

from odssam.config import ExperimentConfig, TrainConfig, apply_overrides, from_dict, to_dict, with_overrides
from odssam.data import build_dataset
from odssam.engine.augment import DecodedTrainingSet
from odssam.engine.cache import CacheParams, CachedTrainingSet, EmbeddingCache, build_embedding_cache
from odssam.engine.targets import (
    TrainingLoss,
    batch_layout,
    collate_training_items,
    loss_resolution,
    target_size,
)
from odssam.engine.trainer import train
from odssam.errors import OdsSamError
from odssam.models.loss import DiceBCELoss
from odssam.models.transforms import postprocess_logits

SIZES = [(40, 56), (48, 32), (36, 36)]  # unequal label sizes, landscape and portrait


@pytest.fixture(scope="module")
def mixed_size_dataset(tmp_path_factory):
    """A folder dataset whose images have different sizes: 6 train, 2 test."""
    root = tmp_path_factory.mktemp("mixed_sizes")
    rng = np.random.default_rng(1)
    for split, count in (("train", 6), ("test", 2)):
        for index in range(count):
            image, mask = blob_sample(rng, *SIZES[index % len(SIZES)])
            save_image(image, root / split / "images" / f"{split}{index:02d}.png")
            save_image(mask, root / split / "masks" / f"{split}{index:02d}.png")
    return root


def test_resolutions_and_the_deprecated_switch():
    assert loss_resolution(TrainConfig()) == "logits"
    assert loss_resolution(TrainConfig(loss_resolution="label")) == "label"
    assert loss_resolution(TrainConfig(full_resolution_loss=True)) == "input"
    # Both are refused when the config is built (the one place values are checked).
    with pytest.raises(OdsSamError, match="train.loss_resolution"):
        loss_resolution(from_dict(ExperimentConfig, {"train": {"loss_resolution": "pixels"}}).train)
    with pytest.raises(OdsSamError, match="full_resolution_loss"):
        loss_resolution(
            from_dict(ExperimentConfig, {"train": {"full_resolution_loss": True, "loss_resolution": "label"}}).train
        )
    assert [target_size(r, 1024, 256) for r in ("logits", "input", "label")] == [256, 1024, None]


def test_an_old_config_with_full_resolution_loss_still_loads_as_input():
    old = to_dict(ExperimentConfig())
    del old["train"]["loss_resolution"]  # written before the switch existed
    old["train"]["full_resolution_loss"] = True
    assert loss_resolution(from_dict(ExperimentConfig, old).train) == "input"


def test_collate_pads_unequal_targets_and_keeps_their_sizes():
    items = [
        {"x": torch.zeros(3, 8, 8), "target": torch.ones(1, 5, 7), "input_size": torch.tensor([6, 8]),
         "label_size": torch.tensor([5, 7])},
        {"x": torch.zeros(3, 8, 8), "target": torch.ones(1, 6, 4), "input_size": torch.tensor([8, 5]),
         "label_size": torch.tensor([6, 4])},
    ]
    batch = collate_training_items(items)
    assert batch["target"].shape == (2, 1, 6, 7)
    assert batch["target"][0, 0, 5].sum() == 0 and batch["target"][1, 0, :, 4:].sum() == 0  # zero padding
    assert batch_layout(batch) == (((6, 8), (8, 5)), ((5, 7), (6, 4)))
    equal = collate_training_items([{"target": torch.ones(1, 4, 4)}] * 3)
    assert equal["target"].shape == (3, 1, 4, 4) and batch_layout(equal) is None


def test_label_loss_scores_each_image_on_its_own_label_as_evaluation_maps_it():
    torch.manual_seed(0)
    image_size, loss_fn = 64, DiceBCELoss()
    logits = torch.randn(2, 1, 16, 16)
    layout = (((64, 40), (50, 64)), ((30, 19), (40, 51)))
    labels = [(torch.rand(1, h, w) > 0.5).float() for h, w in layout[1]]
    padded = collate_training_items([{"target": t} for t in labels])["target"]
    loss = TrainingLoss(loss_fn, "label", image_size)(logits, padded, layout)
    maps = postprocess_logits(logits, layout[0], layout[1], image_size)  # what evaluation scores
    alone = [loss_fn(m[None], t[None]) for m, t in zip(maps, labels)]
    torch.testing.assert_close(loss, torch.stack(alone).mean())
    poisoned = padded.clone()
    poisoned[0, :, 30:, :] = 1  # padding below the first label
    poisoned[1, :, :, 51:] = 1
    torch.testing.assert_close(TrainingLoss(loss_fn, "label", image_size)(logits, poisoned, layout), loss)


def test_label_loss_with_equal_sizes_is_the_batch_loss():
    torch.manual_seed(1)
    logits = torch.randn(3, 1, 16, 16)
    layout = (((64, 64),) * 3, ((32, 32),) * 3)
    target = (torch.rand(3, 1, 32, 32) > 0.5).float()
    loss = TrainingLoss(DiceBCELoss(), "label", 64)(logits, target, layout)
    per_image = [TrainingLoss(DiceBCELoss(), "label", 64)(logits[i : i + 1], target[i : i + 1], ((layout[0][i],), (layout[1][i],))) for i in range(3)]
    torch.testing.assert_close(loss, torch.stack(per_image).mean())


def test_input_loss_upsamples_the_logits_to_the_targets():
    torch.manual_seed(2)
    logits, target = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 64, 64) > 0.5).float()
    upsampled = torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(TrainingLoss(DiceBCELoss(), "input", 64)(logits, target), DiceBCELoss()(upsampled, target))


def test_cached_and_decoded_label_targets_are_the_masks(tiny_model, mixed_size_dataset, tmp_path):
    dataset = build_dataset("folder", mixed_size_dataset, "train")
    params = CacheParams("fingerprint", tiny_model.image_size, 64, None)
    cache = EmbeddingCache(tmp_path / "cache", params)
    records, stats = build_embedding_cache(tiny_model, dataset, cache)
    assert stats.per_kind_misses["target"] == 0 and not (tmp_path / "cache" / "v1" / "target").exists()
    cached = CachedTrainingSet(cache, records)
    decoded = DecodedTrainingSet(dataset, tiny_model.image_size, None)
    for index in range(3):
        mask = dataset[index].mask
        for item in (cached[index], decoded[index]):
            assert torch.equal(item["target"][0], torch.from_numpy(mask).float())
            assert tuple(item["label_size"].tolist()) == mask.shape
            assert tuple(item["input_size"].tolist()) == records[index].input_size
    batch = collate_training_items([cached[i] for i in range(3)])
    assert batch["target"].shape == (3, 1, 48, 56)


@pytest.mark.parametrize("resolution", ["logits", "input", "label"])
@pytest.mark.parametrize("augment", [False, True], ids=["cached", "decoded"])
def test_training_runs_at_every_resolution_on_images_of_unequal_sizes(
    tiny_config, mixed_size_dataset, resolution, augment
):
    cfg = with_overrides(
        tiny_config,
        {
            "data.root": str(mixed_size_dataset),
            "train.loss_resolution": resolution,
            "train.augment": augment,
            "train.batch_size": 3,
            "train.epochs": 1,
            "train.final_eval": False,
        },
    )
    result = train(cfg, progress=False)
    assert result.steps == 2 and np.isfinite(result.history[0]["train_loss"])
    cache_report = json.loads((result.run_dir / "cache.json").read_text())
    if not augment:
        assert cache_report["train"]["per_kind_misses"]["target"] == (0 if resolution == "label" else 6)


def test_label_resolution_changes_what_is_learned(tiny_config, mixed_size_dataset):
    changes = {"data.root": str(mixed_size_dataset), "train.epochs": 1, "train.final_eval": False}
    losses = {}
    for resolution in ("logits", "label"):
        per_resolution = {"train.loss_resolution": resolution, "train.run_name": resolution}
        cfg = with_overrides(tiny_config, {**changes, **per_resolution})
        losses[resolution] = train(cfg, progress=False).history[0]["train_loss"]
    assert losses["logits"] != losses["label"]


def test_deprecated_switch_trains_as_input(tiny_config):
    cfg = from_dict(ExperimentConfig, apply_overrides(to_dict(tiny_config), ["train.full_resolution_loss=true"]))
    cfg = with_overrides(cfg, {"train.max_steps": 1, "train.final_eval": False})
    with pytest.warns(FutureWarning, match="loss_resolution: input"):
        result = train(cfg, progress=False)
    assert result.steps == 1


def test_graph_needs_fixed_label_sizes(tiny_config):
    cuda = torch.device("cuda")
    label = with_overrides(
        tiny_config,
        # The reference scan is capturable; the chunked one is not.
        {"model.prompt_encoder.ssm.scan_backend": "reference", "train.loss_resolution": "label"},
    )
    assert "data.image_size" in graph_reason(label, cuda, 1, True)
    assert graph_reason(with_overrides(label, {"data.image_size": 48}), cuda, 1, True) is None
