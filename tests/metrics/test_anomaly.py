"""Pixel AUROC against scikit-learn, AUPRO against a brute-force evaluation of its definition."""

import math

import numpy as np
import pytest
from metrics_samples import realistic_pair
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from odssam.metrics.anomaly import PixelScoreAccumulator, area_up_to, label_regions, pixel_aupro, pixel_auroc
from odssam.metrics.evaluator import Evaluator


def _dataset(rng, n=5, shape=(36, 44), with_good=True):
    probs, gts = [], []
    for _ in range(n):
        pred, gt = realistic_pair(shape, rng)
        probs.append(pred / 255.0)
        gts.append(gt > 127)
    if with_good:  # a defect-free image, as MVTec AD test sets have
        probs.append(rng.integers(0, 90, shape).astype(np.float64) / 255)
        gts.append(np.zeros(shape, dtype=bool))
    return probs, gts


def _brute_force_aupro(probs, gts, limit=0.3):
    """Every distinct score as a threshold; regions labelled independently; MVTec-style cut at the limit."""
    structure = np.ones((3, 3))
    regions = []
    for gt in gts:
        labels, count = ndimage.label(gt, structure=structure)
        regions.append([labels == k for k in range(1, count + 1)])
    scores = np.unique(np.concatenate([p.ravel() for p in probs]))
    n_normal = sum(np.count_nonzero(~gt) for gt in gts)
    fprs, pros = [0.0], [0.0]
    for threshold in scores[::-1]:
        false_positives = sum(np.count_nonzero((p >= threshold) & ~gt) for p, gt in zip(probs, gts))
        overlaps = [np.mean(p[region] >= threshold) for p, image_regions in zip(probs, regions)
                    for region in image_regions]
        fprs.append(false_positives / n_normal)
        pros.append(float(np.mean(overlaps)))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= limit
    x, y = list(fprs[keep]), list(pros[keep])
    if x[-1] < limit:
        nxt = int(np.argmax(fprs > limit))
        y.append(pros[nxt - 1] + (pros[nxt] - pros[nxt - 1]) * (limit - fprs[nxt - 1]) / (fprs[nxt] - fprs[nxt - 1]))
        x.append(limit)
    return float(np.sum(np.diff(x) * (np.array(y[1:]) + np.array(y[:-1])) / 2)) / limit


def test_auroc_matches_sklearn_exact_and_binned(rng):
    probs, gts = _dataset(rng)
    expected = roc_auc_score(np.concatenate([g.ravel() for g in gts]), np.concatenate([p.ravel() for p in probs]))
    assert pixel_auroc(probs, gts, exact=True) == pytest.approx(expected, abs=1e-12)
    # 8-bit maps fall one value per bin, so the constant-memory histogram is exact too.
    assert pixel_auroc(probs, gts, exact=False) == pytest.approx(expected, abs=1e-12)


def test_binned_auroc_on_float_maps_is_close_and_exact_mode_is_exact(rng):
    probs = [rng.random((30, 30)) ** 2 for _ in range(3)]
    gts = [(p + rng.normal(0, 0.3, p.shape)) > 0.6 for p in probs]
    expected = roc_auc_score(np.concatenate([g.ravel() for g in gts]), np.concatenate([p.ravel() for p in probs]))
    assert pixel_auroc(probs, gts, exact=True) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(probs, gts, exact=False) == pytest.approx(expected, abs=1e-4)


def test_aupro_matches_brute_force_definition(rng):
    probs, gts = _dataset(rng, n=4, shape=(24, 28))
    expected = _brute_force_aupro(probs, gts)
    assert 0.0 < expected < 1.0
    assert pixel_aupro(probs, gts, exact=True) == pytest.approx(expected, abs=1e-9)
    assert pixel_aupro(probs, gts, exact=False) == pytest.approx(expected, abs=1e-9)
    assert pixel_aupro(probs, gts, fpr_limit=0.05) == pytest.approx(_brute_force_aupro(probs, gts, 0.05), abs=1e-9)


def test_aupro_weighs_regions_equally_not_pixels():
    gt = np.zeros((20, 20), dtype=bool)
    gt[1:11, 1:11] = True  # 100-pixel region, found
    gt[15, 15] = True  # 1-pixel region, missed
    prob = np.where(gt, 0.9, 0.1)
    prob[15, 15] = 0.0
    # Up to FPR 0.3 only the big region is detected: PRO = 1/2, whereas pixel recall would be 100/101.
    assert pixel_aupro([prob], [gt]) == pytest.approx(0.5, abs=1e-12)


def test_regions_are_eight_connected():
    gt = np.zeros((5, 5), dtype=bool)
    gt[1, 1] = gt[2, 2] = True  # diagonal neighbours: one region
    gt[4, 0] = True
    labels, count = label_regions(gt)
    assert count == 2
    assert labels[1, 1] == labels[2, 2] != labels[4, 0]


def test_perfect_and_inverted_predictions():
    gt = np.zeros((16, 16), dtype=bool)
    gt[4:9, 3:7] = True
    gt[12:14, 12:15] = True
    perfect = gt.astype(np.float64)
    assert pixel_auroc([perfect], [gt]) == 1.0
    assert pixel_aupro([perfect], [gt]) == pytest.approx(1.0)
    assert pixel_auroc([1 - perfect], [gt]) == 0.0
    assert pixel_aupro([1 - perfect], [gt]) == 0.0


def test_constant_prediction_scores_chance():
    gt = np.zeros((10, 10), dtype=bool)
    gt[2:5, 2:5] = True
    constant = np.full((10, 10), 0.3)
    assert pixel_auroc([constant], [gt]) == pytest.approx(0.5)
    # FPR jumps from 0 to 1 at once; interpolated PRO at FPR 0.3 is 0.3, so the area is 0.3^2/2.
    assert pixel_aupro([constant], [gt]) == pytest.approx(0.15)


def test_undefined_without_anomalies_or_without_normal_pixels():
    empty = np.zeros((6, 6), dtype=bool)
    prob = np.linspace(0, 1, 36).reshape(6, 6)
    assert math.isnan(pixel_auroc([prob], [empty]))
    assert math.isnan(pixel_aupro([prob], [empty]))
    assert math.isnan(pixel_auroc([prob], [~empty]))


def test_evaluator_reports_raw_probability_auc_under_anomalib_names(rng):
    probs, gts = _dataset(rng, n=3)
    evaluator = Evaluator(metrics=("auroc", "aupro"))
    for prob, gt in zip(probs, gts):
        evaluator.update(prob, gt)
    values = evaluator.compute().values
    assert values["pixel_AUROC"] == pytest.approx(pixel_auroc(probs, gts), abs=1e-12)
    assert values["pixel_AUPRO"] == pytest.approx(pixel_aupro(probs, gts), abs=1e-12)
    other_limit = Evaluator(metrics=("aupro",), fpr_limit=0.1)
    other_limit.update(probs[0], gts[0])
    assert set(other_limit.compute().values) == {"pixel_AUPRO@0.1"}


def test_binned_state_does_not_grow_with_images(rng):
    accumulator = PixelScoreAccumulator(num_bins=1024)
    probs, gts = _dataset(rng, n=2)
    accumulator.update(probs[0], gts[0])
    sizes = [a.nbytes for a in (accumulator._neg_hist, accumulator._pos_hist, accumulator._region_hist)]
    for prob, gt in zip(probs, gts):
        accumulator.update(prob, gt)
    assert [a.nbytes for a in (accumulator._neg_hist, accumulator._pos_hist, accumulator._region_hist)] == sizes


def test_area_up_to_interpolates_at_the_limit():
    x = np.array([0.0, 0.2, 0.6, 1.0])
    y = np.array([0.0, 0.5, 0.9, 1.0])
    # Trapezoids 0..0.2 (0.05) and 0.2..0.3 with y(0.3) = 0.6 (0.055).
    assert area_up_to(x, y, 0.3) == pytest.approx(0.105)
