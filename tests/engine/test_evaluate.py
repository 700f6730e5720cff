"""Evaluation runs the prediction path: the same maps as the reference, from images or the cache."""

from __future__ import annotations

import json

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
from odssam.errors import OdsSamError
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


@pytest.fixture
def damaged_train_set(folder_dataset, tmp_path):
    """The train split of a copy of the folder dataset; then a mask and an image of it broken."""
    import shutil

    root = shutil.copytree(folder_dataset, tmp_path / "copy")
    dataset = build_dataset("folder", root, "train")
    for path in (dataset.entries[1].mask_path, dataset.entries[4].image_path):
        path.write_bytes(path.read_bytes()[:80])
    return dataset


@pytest.mark.parametrize("num_workers", [0, 1])
def test_unreadable_samples_are_skipped_and_the_others_scored(tiny_model, damaged_train_set, num_workers):
    from torch.utils.data import Subset

    skipped = []
    result, kept = evaluate_dataset(
        tiny_model, damaged_train_set, name="train", batch_size=2, num_workers=num_workers,
        keep_samples=6, skipped=skipped,
    )
    entries = damaged_train_set.entries
    assert [sample.name for sample in skipped] == [entries[1].name, entries[4].name]
    assert str(entries[1].mask_path) in skipped[0].reason and str(entries[4].image_path) in skipped[1].reason
    assert "cannot decode" in skipped[0].reason
    assert [name for *_, name in kept] == [entries[i].name for i in (0, 2, 3, 5)]
    readable, _ = evaluate_dataset(tiny_model, Subset(damaged_train_set, [0, 2, 3, 5]), name="train", batch_size=2)
    assert result.n_images == 4
    _assert_same_scores(result, readable)


def test_without_a_skipped_list_the_first_unreadable_sample_is_an_error(tiny_model, damaged_train_set):
    with pytest.raises(OdsSamError, match=f"{damaged_train_set.entries[1].mask_path}: cannot decode"):
        evaluate_dataset(tiny_model, damaged_train_set, name="train", batch_size=2, num_workers=1)


def test_too_elongated_and_wholly_skipped_batches(tiny_model, folder_dataset, tmp_path):
    import shutil

    from helpers import random_rgb, save_image

    root = shutil.copytree(folder_dataset, tmp_path / "copy")
    path = save_image(random_rgb(np.random.default_rng(0), 1, 600), root / "test" / "images" / "test01.png")
    save_image(np.ones((1, 600), dtype=bool), root / "test" / "masks" / "test01.png")
    test_set = build_dataset("folder", root, "test")
    skipped = []
    result, _ = evaluate_dataset(tiny_model, test_set, name="test", batch_size=1, skipped=skipped)
    assert result.n_images == 1 and [sample.name for sample in skipped] == ["test01"]
    assert skipped[0].reason.startswith(f"{path}: image is 600x1 (WxH, 600:1)") and "up to 512:1" in skipped[0].reason
    (root / "test" / "images" / "test00.png").write_bytes(b"")
    skipped = []
    result, _ = evaluate_dataset(tiny_model, test_set, name="test", batch_size=1, skipped=skipped)
    assert result.n_images == 0 and len(skipped) == 2  # nothing to score: still a result


def test_write_skipped_lists_them_beside_the_report(tmp_path):
    from odssam.engine.evaluate import SkippedSample, write_skipped
    from odssam.metrics.report import write_report
    from odssam.metrics.result import MetricResult

    assert write_skipped([], tmp_path) is None
    write_report([MetricResult("test", 1, {"dice@0.5": 0.5})], tmp_path, "report")
    before = (tmp_path / "report.json").read_text()
    skipped = [SkippedSample("a", "/data/a.png: cannot decode image data (image file is truncated)")]
    path = write_skipped(skipped, tmp_path)
    assert json.loads(path.read_text()) == [{"name": "a", "reason": skipped[0].reason}]
    markdown = (tmp_path / "report.md").read_text()
    assert "## Skipped: 1 unreadable sample(s), not scored" in markdown and f"- a: {skipped[0].reason}" in markdown
    assert (tmp_path / "report.json").read_text() == before  # the scores keep their format
