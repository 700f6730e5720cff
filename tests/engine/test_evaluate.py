"""Evaluation runs the prediction path: the same maps as the reference, from images or the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odssam.data import build_dataset
from odssam.engine.cache import (
    CacheParams,
    CachedEvaluationSet,
    EmbeddingCache,
    build_embedding_cache,
    collate_cached_eval,
    embedding_from_batch,
)
from odssam.engine.evaluate import evaluate_cached, evaluate_dataset
from odssam.inference.batch import predict_probabilities
from odssam.metrics.evaluator import Evaluator


@pytest.fixture(scope="module")
def train_set(folder_dataset):
    return build_dataset("folder", folder_dataset, "train")


def test_evaluation_scores_the_reference_maps(tiny_model, train_set, tmp_path):
    result, kept = evaluate_dataset(
        tiny_model, train_set, name="train", batch_size=4, keep_samples=len(train_set), prediction_dir=tmp_path
    )
    samples = [train_set[index] for index in range(len(train_set))]
    references = predict_probabilities(tiny_model, [sample.image for sample in samples])
    assert [name for *_, name in kept] == train_set.names
    evaluator = Evaluator(name="train")
    for (image, mask, probability, _), sample, reference in zip(kept, samples, references):
        assert np.array_equal(image, sample.image) and np.array_equal(mask, sample.mask)
        np.testing.assert_allclose(probability, reference, atol=1e-6)
        evaluator.update(reference, sample.mask)
    assert sorted(path.stem for path in tmp_path.glob("*.png")) == sorted(train_set.names)
    _assert_same_scores(result, evaluator.compute())


def test_cached_evaluation_scores_the_model_on_the_cached_inputs(tiny_model, train_set, tmp_path):
    params = CacheParams(tiny_model.frozen_fingerprint(), tiny_model.image_size, tiny_model.prompt_input_size, None)
    cache = EmbeddingCache(tmp_path, params)
    records, _ = build_embedding_cache(tiny_model, train_set, cache, batch_size=4)
    result = evaluate_cached(tiny_model, cache, records, name="train", batch_size=len(records))

    batch = collate_cached_eval([CachedEvaluationSet(cache, records)[index] for index in range(len(records))])
    with torch.no_grad():
        embedding = tuple(part.float() for part in embedding_from_batch(batch))
        logits = tiny_model(batch["prompt_input"].float(), image_embeddings=embedding)
        maps = tiny_model.postprocess(logits, batch["input_sizes"], batch["image_shapes"])
    evaluator = Evaluator(name="train")
    for logit_map, mask in zip(maps, batch["masks"]):
        evaluator.update(torch.sigmoid(logit_map[0]).numpy(), mask)
    _assert_same_scores(result, evaluator.compute())


def _assert_same_scores(result, expected) -> None:
    assert result.n_images == expected.n_images
    assert result.values.keys() == expected.values.keys()
    for key, value in expected.values.items():
        assert result.values[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key
