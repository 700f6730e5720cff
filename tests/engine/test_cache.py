"""Embedding cache: hits, misses, invalidation, stored values, and the cached training inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from odssam.config import ExperimentConfig, from_dict
from odssam.data import build_dataset
from odssam.engine.cache import (
    CacheParams,
    CachedEvaluationSet,
    CachedTrainingSet,
    EmbeddingCache,
    build_embedding_cache,
    prompt_input_from,
)
from odssam.errors import OdsSamError
from odssam.models.loss import masks_to_targets
from odssam.models.transforms import sam_preprocess


@pytest.fixture(scope="module")
def train_set(folder_dataset):
    return build_dataset("folder", folder_dataset, "train")


def params_for(model, **changes) -> CacheParams:
    params = CacheParams(model.frozen_fingerprint(), model.image_size, model.prompt_input_size, model.logit_size)
    return dataclasses.replace(params, **changes)


class EditedFirstImage(torch.utils.data.Dataset):
    """The same samples with one pixel of the first image changed."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        sample = self.dataset[index]
        if index == 0:
            image = sample.image.copy()
            image[0, 0, 0] ^= 1
            sample = dataclasses.replace(sample, image=image)
        return sample


def test_second_build_hits_every_entry(tiny_model, train_set, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model))
    records, first = build_embedding_cache(tiny_model, train_set, cache, batch_size=3)
    assert (first.images, first.embedding_misses, first.embedding_hits) == (len(train_set), len(train_set), 0)
    again, second = build_embedding_cache(tiny_model, train_set, cache, batch_size=3)
    assert (second.embedding_misses, second.embedding_hits) == (0, len(train_set))
    assert sum(second.per_kind_misses.values()) == 0
    assert again == records
    assert [r.name for r in records] == train_set.names


def test_stored_arrays_equal_what_the_model_computes(tiny_model, train_set, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model))
    records, _ = build_embedding_cache(tiny_model, train_set, cache, batch_size=4)
    samples = [train_set[i] for i in range(2)]
    x, input_sizes, _ = sam_preprocess([s.image for s in samples], tiny_model.image_size)
    with torch.no_grad():
        embeddings = tiny_model.encode(x)[0]
    targets = masks_to_targets([s.mask for s in samples], input_sizes, tiny_model.image_size, tiny_model.logit_size)
    for i, record in enumerate(records[:2]):
        stored = cache.read_embedding(record.keys["embedding"])
        assert stored.dtype == torch.bfloat16
        assert torch.equal(stored, embeddings[i].to(torch.bfloat16))
        expected_prompt = prompt_input_from(x, tiny_model.prompt_input_size)[i].half()
        assert torch.equal(cache.read_prompt(record.keys["prompt"]), expected_prompt)
        assert torch.equal(cache.read_target(record.keys["target"]), targets[i])
        assert np.array_equal(cache.read_mask(record.keys["mask"]), samples[i].mask)
        assert record.input_size == input_sizes[i]


@pytest.mark.parametrize(
    "change",
    [{"sam_fingerprint": "another-sam"}, {"image_size": 512}, {"dtype": "float16"}],
    ids=["fingerprint", "size", "dtype"],
)
def test_changed_parameters_miss(tiny_model, train_set, tmp_path, change):
    base = params_for(tiny_model)
    sample = train_set[0]
    original = EmbeddingCache(tmp_path, base).record_for(sample.image, sample.mask)
    changed = EmbeddingCache(tmp_path, dataclasses.replace(base, **change)).record_for(sample.image, sample.mask)
    assert changed.keys["embedding"] != original.keys["embedding"]
    # Only what depends on the change is invalidated: the SAM weights do not enter the prompt input.
    assert (changed.keys["prompt"] == original.keys["prompt"]) == ("image_size" not in change)
    assert changed.keys["mask"] == original.keys["mask"]


def test_new_fingerprint_recomputes_embeddings(tiny_model, train_set, tmp_path):
    build_embedding_cache(tiny_model, train_set, EmbeddingCache(tmp_path, params_for(tiny_model)))
    other = EmbeddingCache(tmp_path, params_for(tiny_model, sam_fingerprint="fine-tuned-sam"))
    _, stats = build_embedding_cache(tiny_model, train_set, other)
    assert stats.embedding_misses == len(train_set)
    assert stats.per_kind_misses["prompt"] == 0 and stats.per_kind_misses["target"] == 0


def test_changed_image_recomputes_only_that_image(tiny_model, train_set, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model))
    records, _ = build_embedding_cache(tiny_model, train_set, cache)
    edited, stats = build_embedding_cache(tiny_model, EditedFirstImage(train_set), cache)
    assert stats.embedding_misses == 1 and stats.embedding_hits == len(train_set) - 1
    assert edited[0].keys["embedding"] != records[0].keys["embedding"]
    assert edited[1:] == records[1:]


def test_truncated_entry_is_recomputed(tiny_model, train_set, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model))
    records, _ = build_embedding_cache(tiny_model, train_set, cache)
    path = cache.path("embedding", records[2].keys["embedding"])
    expected = cache.read_embedding(records[2].keys["embedding"])
    path.write_bytes(path.read_bytes()[:200])
    assert not cache.is_valid("embedding", records[2].keys["embedding"])
    _, stats = build_embedding_cache(tiny_model, train_set, cache)
    assert stats.embedding_misses == 1
    assert torch.equal(cache.read_embedding(records[2].keys["embedding"]), expected)


def test_unreadable_entry_names_the_file(tiny_model, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model))
    with pytest.raises(OdsSamError, match="embedding cache entry"):
        cache.read_embedding("ab" * 32)


def test_fp16_cache_and_bad_dtype(tiny_model, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model, dtype="float16"))
    embedding = torch.randn(256, 4, 4)
    cache.write_embedding("cd" * 32, embedding)
    assert torch.equal(cache.read_embedding("cd" * 32), embedding.half())
    with pytest.raises(OdsSamError, match="cache_dtype"):  # refused when the config is built
        from_dict(ExperimentConfig, {"train": {"cache_dtype": "int8"}})


def test_mask_round_trip_keeps_odd_shapes(tiny_model, tmp_path, rng):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model))
    mask = rng.random((13, 29)) > 0.6
    cache.write_mask("ef" * 32, mask)
    assert np.array_equal(cache.read_mask("ef" * 32), mask)


def test_prompt_input_gives_the_same_prompt_as_the_full_input(tiny_model, train_set):
    x, _, _ = sam_preprocess([train_set[0].image, train_set[1].image], tiny_model.image_size)
    with torch.no_grad():
        direct = tiny_model.prompt(x)
        via_cache = tiny_model.prompt(prompt_input_from(x, tiny_model.prompt_input_size))
    assert torch.allclose(direct, via_cache, atol=1e-5)


def test_cached_forward_matches_the_uncached_one(tiny_model, train_set, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model, dtype="float16"))
    records, _ = build_embedding_cache(tiny_model, train_set, cache)
    items = CachedTrainingSet(cache, records)
    batch = torch.utils.data.default_collate([items[0], items[1]])
    assert batch["prompt_input"].shape == (2, 3, tiny_model.prompt_input_size, tiny_model.prompt_input_size)
    assert batch["embedding"].shape == (2, 256, tiny_model.embedding_size, tiny_model.embedding_size)
    assert batch["target"].shape == (2, 1, tiny_model.logit_size, tiny_model.logit_size)
    x, _, _ = sam_preprocess([train_set[0].image, train_set[1].image], tiny_model.image_size)
    with torch.no_grad():
        uncached = tiny_model(x)
        cached = tiny_model(batch["prompt_input"].float(), image_embeddings=batch["embedding"].float())
    assert (cached - uncached).abs().max() < 2e-2 * uncached.abs().max()
    evaluation_item = CachedEvaluationSet(cache, records)[0]
    assert evaluation_item["mask"].shape == evaluation_item["image_shape"] == train_set[0].mask.shape
