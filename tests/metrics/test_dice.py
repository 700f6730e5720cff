"""Dice/IoU in both conventions against direct per-image computations (and PySODMetrics)."""

import numpy as np
import py_sod_metrics
import pytest
from metrics_samples import edge_case_pairs, realistic_pair

from odssam.metrics import dice
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.inputs import minmax_normalize


def _direct_fixed(prob, gt, threshold=0.5):
    """Plain set arithmetic; both empty counts as a perfect match."""
    pred = prob > threshold
    inter = np.logical_and(pred, gt).sum()
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0, 1.0
    return 2 * inter / (pred.sum() + gt.sum()), inter / union


def _direct_pranet(prob, gt):
    """PraNet's loop: normalised map >= t for t = 1, 254/255, ..., 0; 0 where nothing overlaps."""
    norm = minmax_normalize(prob)
    dices, ious = [], []
    for level in range(255, -1, -1):
        pred = norm >= level / 255
        inter = np.logical_and(pred, gt).sum()
        if inter == 0:
            dices.append(0.0)
            ious.append(0.0)
        else:
            dices.append(2 * inter / (gt.sum() + pred.sum()))
            ious.append(inter / (gt.sum() - inter + pred.sum()))
    return np.array(dices[::-1]), np.array(ious[::-1])


def _samples(rng):
    samples = [realistic_pair((int(rng.integers(25, 60)), int(rng.integers(25, 60))), rng) for _ in range(6)]
    samples += [(pred, gt) for _, pred, gt in edge_case_pairs(rng)]
    return [(pred / 255.0, gt > 127) for pred, gt in samples]


def test_fixed_threshold_dice_iou_match_direct_computation(rng):
    samples = _samples(rng)
    evaluator = Evaluator(metrics=("dice", "iou"))
    expected = []
    for prob, gt in samples:
        evaluator.update(prob, gt)
        expected.append(_direct_fixed(prob, gt))
        assert dice.dice_iou_at_threshold(prob, gt) == pytest.approx(expected[-1], abs=1e-12)
    values = evaluator.compute().values
    assert set(values) == {"dice@0.5", "iou@0.5"}
    assert values["dice@0.5"] == pytest.approx(np.mean([d for d, _ in expected]), abs=1e-12)
    assert values["iou@0.5"] == pytest.approx(np.mean([i for _, i in expected]), abs=1e-12)


def test_pranet_mean_dice_iou_match_direct_threshold_loop(rng):
    samples = _samples(rng)
    evaluator = Evaluator(metrics=("mdice", "miou"))
    dice_curves, iou_curves = [], []
    for prob, gt in samples:
        evaluator.update(prob, gt)
        d, i = _direct_pranet(prob, gt)
        dice_curves.append(d)
        iou_curves.append(i)
    result = evaluator.compute()
    assert np.abs(np.asarray(result.curves["dice"]) - np.mean(dice_curves, axis=0)).max() < 1e-12
    assert np.abs(np.asarray(result.curves["iou"]) - np.mean(iou_curves, axis=0)).max() < 1e-12
    assert result.values["meanDic"] == pytest.approx(np.mean(dice_curves), abs=1e-12)
    assert result.values["meanIoU"] == pytest.approx(np.mean(iou_curves), abs=1e-12)


def test_pranet_curves_match_pysodmetrics_dynamic_dice_iou(rng):
    samples = [realistic_pair((48, 40), rng) for _ in range(5)]
    reference = py_sod_metrics.FmeasureV2(
        {
            "dice": py_sod_metrics.DICEHandler(with_dynamic=True, with_adaptive=False),
            "iou": py_sod_metrics.IOUHandler(with_dynamic=True, with_adaptive=False),
        }
    )
    evaluator = Evaluator(metrics=("mdice", "miou"))
    for pred, gt in samples:
        reference.step(pred=pred, gt=gt)
        evaluator.update(pred, gt > 128)
    ref = reference.get_results()
    result = evaluator.compute()
    assert np.abs(np.asarray(result.curves["dice"]) - ref["dice"]["dynamic"][::-1]).max() < 1e-6
    assert np.abs(np.asarray(result.curves["iou"]) - ref["iou"]["dynamic"][::-1]).max() < 1e-6


def test_conventions_differ_and_are_labelled(rng):
    prob, gt = realistic_pair((50, 50), rng)
    evaluator = Evaluator(metrics=("dice", "mdice"), threshold=0.3)
    evaluator.update(prob, gt)
    values = evaluator.compute().values
    assert set(values) == {"dice@0.3", "meanDic"}
    assert values["dice@0.3"] != pytest.approx(values["meanDic"], abs=1e-3)


def test_empty_prediction_and_ground_truth():
    empty_prob = np.zeros((8, 8))
    empty_gt = np.zeros((8, 8), dtype=bool)
    assert dice.dice_iou_at_threshold(empty_prob, empty_gt) == (1.0, 1.0)
    assert dice.dice_iou_at_threshold(empty_prob, empty_gt, empty_score=0.0) == (0.0, 0.0)
    # PraNet scores an image 0 wherever prediction and ground truth share no pixel.
    d, i = dice.dice_iou_from_counts(np.zeros(256), np.zeros(256), 0)
    assert d.max() == 0 and i.max() == 0


def test_probability_of_exactly_half_is_background():
    prob = np.full((2, 2), 0.5)
    gt = np.ones((2, 2), dtype=bool)
    assert dice.dice_iou_at_threshold(prob, gt) == (0.0, 0.0)
