"""Streaming Evaluator: batching forms, input types, selection of metrics, errors."""

import math

import numpy as np
import pytest
import torch
from metrics_samples import realistic_pair

from odssam.config import METRIC_CHOICES
from odssam.errors import OdsSamError
from odssam.metrics import evaluator as evaluator_module
from odssam.metrics.evaluator import DEFAULT_METRICS, METRIC_NAMES, Evaluator, resolve_metrics
from odssam.metrics.inputs import as_mask, as_probability
from odssam.metrics.registry import Metric, MetricSpec, register_metric, unregister_metric
from odssam.metrics.result import metric_spec


def _batch(rng, n=4, shape=(32, 40)):
    pairs = [realistic_pair(shape, rng) for _ in range(n)]
    probs = np.stack([p / 255.0 for p, _ in pairs])
    gts = np.stack([g > 127 for _, g in pairs])
    return probs, gts


def _computed(evaluator):
    return evaluator.compute().values


def test_batch_forms_equal_image_by_image_updates(rng):
    probs, gts = _batch(rng)
    one_by_one = Evaluator(metrics="all")
    for prob, gt in zip(probs, gts):
        one_by_one.update(prob, gt)
    expected = _computed(one_by_one)

    as_array = Evaluator(metrics="all")
    as_array.update(probs, gts)
    as_list = Evaluator(metrics="all")
    as_list.update(list(probs), list(gts))
    as_tensor = Evaluator(metrics="all")
    as_tensor.update(torch.from_numpy(probs).unsqueeze(1), torch.from_numpy(gts).unsqueeze(1))
    split = Evaluator(metrics="all")
    split.update(probs[:1], gts[:1])
    split.update(probs[1:], gts[1:])
    for other in (as_array, as_list, as_tensor, split):
        assert other.n_images == len(probs)
        for key, value in expected.items():
            assert _computed(other)[key] == pytest.approx(value, abs=1e-12), key


def test_low_precision_tensors_and_uint8_maps_are_accepted(rng):
    probs, gts = _batch(rng, n=2)
    reference = Evaluator(metrics=("mae", "dice"))
    reference.update(np.rint(probs * 255).astype(np.uint8), gts)
    half = Evaluator(metrics=("mae", "dice"))
    half.update(torch.from_numpy(probs).to(torch.bfloat16), torch.from_numpy(gts.astype(np.float32)))
    assert _computed(half)["dice@0.5"] == pytest.approx(_computed(reference)["dice@0.5"], abs=0.02)
    assert _computed(half)["MAE"] == pytest.approx(_computed(reference)["MAE"], abs=0.01)


def test_default_metrics_and_labelled_keys(rng):
    probs, gts = _batch(rng, n=2)
    evaluator = Evaluator(name="kvasir")
    evaluator.update(probs, gts)
    result = evaluator.compute()
    assert evaluator.metrics == DEFAULT_METRICS
    assert result.name == "kvasir" and result.n_images == 2
    assert list(result.values) == ["MAE", "meanEm", "maxEm", "adpEm", "dice@0.5", "iou@0.5", "meanDic", "meanIoU"]
    assert set(result.curves) == {"emeasure", "dice", "iou"}
    assert all(len(curve) == 256 for curve in result.curves.values())


def test_reset_and_empty_evaluator(rng):
    probs, gts = _batch(rng, n=2)
    evaluator = Evaluator(metrics="all")
    values = _computed(evaluator)
    assert evaluator.compute().n_images == 0
    assert all(math.isnan(v) for v in values.values())
    evaluator.update(probs, gts)
    first = _computed(evaluator)
    evaluator.reset()
    evaluator.update(probs, gts)
    assert _computed(evaluator) == pytest.approx(first)


def test_resolve_metrics_names():
    assert resolve_metrics("all") == METRIC_NAMES
    assert resolve_metrics("default, auroc") == DEFAULT_METRICS + ("auroc",)
    assert resolve_metrics(["miou", "MAE"]) == ("mae", "miou")
    with pytest.raises(OdsSamError, match="unknown metric 'dicee'"):
        resolve_metrics("dicee")
    with pytest.raises(OdsSamError, match="no metric"):
        resolve_metrics("")


def test_bad_inputs_are_rejected():
    evaluator = Evaluator()
    with pytest.raises(ValueError, match="differ in size"):
        evaluator.update(np.zeros((4, 5)), np.zeros((5, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluator.update(np.full((4, 4), 1.5), np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        evaluator.update(np.full((4, 4), np.nan), np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="predictions but"):
        evaluator.update([np.zeros((4, 4))] * 2, [np.zeros((4, 4), dtype=bool)])
    assert evaluator.n_images == 0


def test_ground_truth_binarisation_rules():
    assert as_mask(np.array([[127, 128]], dtype=np.uint8)).tolist() == [[False, True]]
    assert as_mask(np.array([[0.5, 0.51]])).tolist() == [[False, True]]
    assert as_probability(np.array([[0, 255]], dtype=np.uint8)).tolist() == [[0.0, 1.0]]
    assert as_probability(np.array([[65535]], dtype=np.uint16)).tolist() == [[1.0]]


def test_a_new_metric_is_one_registry_entry(rng):
    """One entry makes a metric selectable (configs included), computed, and labelled in reports."""
    error_rate = Metric(
        "errrate",
        (
            MetricSpec("ErrRate", "Err", False, "share of pixels where prob > 0.5 disagrees with the mask"),
            MetricSpec("maxRowErr", "maxRowErr", False, "largest mean error rate of an image row"),
        ),
        reduce=lambda avg: (avg["errors"], float(avg["per_row"].max())),
        accumulate=lambda image: {
            "errors": np.mean((image.prob > 0.5) != image.gt),
            "per_row": np.mean((image.prob > 0.5) != image.gt, axis=1),  # an H-point curve
        },
        curves=("per_row",),
    )
    probs, gts = _batch(rng, n=3)
    register_metric(error_rate)
    try:
        with pytest.raises(ValueError, match="already taken"):
            register_metric(error_rate)
        assert evaluator_module.METRIC_NAMES[-1] == "errrate" and "errrate" in METRIC_CHOICES()
        assert "errrate" not in evaluator_module.DEFAULT_METRICS
        evaluator = Evaluator(metrics="errrate, mae")
        assert math.isnan(evaluator.compute().values["ErrRate"])
        evaluator.update(probs, gts)
        result = evaluator.compute()
        errors = [(prob > 0.5) != gt for prob, gt in zip(probs, gts)]
        assert list(result.values) == ["MAE", "ErrRate", "maxRowErr"]
        assert result.values["ErrRate"] == pytest.approx(np.mean([e.mean() for e in errors]), abs=1e-15)
        per_row = np.mean([e.mean(axis=1) for e in errors], axis=0)
        assert result.curves["per_row"] == pytest.approx(per_row.tolist(), abs=1e-15)
        assert result.values["maxRowErr"] == pytest.approx(per_row.max(), abs=1e-15)
        assert metric_spec("ErrRate").label == "Err" and not metric_spec("ErrRate").higher_is_better
    finally:
        unregister_metric("errrate")
    with pytest.raises(OdsSamError, match="unknown metric 'errrate'"):
        resolve_metrics("errrate")
    assert metric_spec("ErrRate").higher_is_better  # an unknown key again
