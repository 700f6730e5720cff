"""Parity of MAE, E-measure, S-measure and weighted F with PySODMetrics."""

import numpy as np
import py_sod_metrics
import pytest
from metrics_samples import edge_case_pairs, random_pair, realistic_pair

from odssam.metrics import sod
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.inputs import minmax_normalize

TOLERANCE = 1e-6


def _pairs(rng):
    pairs = [realistic_pair((int(rng.integers(30, 70)), int(rng.integers(30, 70))), rng) for _ in range(6)]
    pairs += [random_pair((40, 50), rng, fg) for fg in (0.05, 0.5)]
    pairs += [(pred, gt) for _, pred, gt in edge_case_pairs(rng)]
    return pairs


def _reference(pairs, normalize=True):
    mae, em, sm, wfm = (py_sod_metrics.MAE(), py_sod_metrics.Emeasure(), py_sod_metrics.Smeasure(),
                        py_sod_metrics.WeightedFmeasure())
    for pred, gt in pairs:
        for metric in (mae, em, sm, wfm):
            if normalize:
                metric.step(pred=pred, gt=gt)
            else:
                metric.step(pred=pred, gt=gt, normalize=False)
    em_results = em.get_results()["em"]
    return {
        "MAE": mae.get_results()["mae"],
        "curve": em_results["curve"][::-1],  # the reference stores threshold 255 first
        "adpEm": em_results["adp"],
        "Sm": sm.get_results()["sm"],
        "wFm": wfm.get_results()["wfm"],
    }


def test_dataset_scores_match_pysodmetrics(rng):
    pairs = _pairs(rng)
    evaluator = Evaluator(metrics=("mae", "emeasure", "smeasure", "wfmeasure"))
    for pred, gt in pairs:
        evaluator.update(pred, gt > 128)
    result = evaluator.compute()
    reference = _reference(pairs)

    curve = np.asarray(result.curves["emeasure"])
    assert curve.shape == (256,)
    assert np.abs(curve - reference["curve"]).max() < TOLERANCE
    assert abs(result.values["meanEm"] - reference["curve"].mean()) < TOLERANCE
    assert abs(result.values["maxEm"] - reference["curve"].max()) < TOLERANCE
    for key in ("MAE", "adpEm", "Sm", "wFm"):
        assert abs(result.values[key] - reference[key]) < TOLERANCE, key


def test_without_normalisation_matches_pysodmetrics_float_mode(rng):
    pairs = []
    for _ in range(4):
        pred, gt = realistic_pair((37, 45), rng)
        pairs.append((pred / 255.0 * 0.6 + 0.1, gt > 128))  # does not span [0, 1]: normalising would change it
    evaluator = Evaluator(metrics=("mae", "emeasure", "smeasure", "wfmeasure"), normalize=False)
    for pred, gt in pairs:
        evaluator.update(pred, gt)
    result = evaluator.compute()
    reference = _reference(pairs, normalize=False)
    assert np.abs(np.asarray(result.curves["emeasure"]) - reference["curve"]).max() < TOLERANCE
    for key in ("MAE", "adpEm", "Sm", "wFm"):
        assert abs(result.values[key] - reference[key]) < TOLERANCE, key
    normalized = Evaluator(metrics=("mae",))
    for pred, gt in pairs:
        normalized.update(pred, gt)
    assert abs(normalized.compute().values["MAE"] - result.values["MAE"]) > 1e-3


@pytest.mark.parametrize("case", [name for name, _, _ in edge_case_pairs(np.random.default_rng(0))])
def test_edge_cases_match_pysodmetrics_per_image(case):
    pairs = {name: (pred, gt) for name, pred, gt in edge_case_pairs(np.random.default_rng(0))}
    pred_u8, gt_u8 = pairs[case]
    pred = minmax_normalize(pred_u8 / 255.0)
    gt = gt_u8 > 128
    reference = _reference([(pred_u8, gt_u8)])
    assert abs(sod.mae(pred, gt) - reference["MAE"]) < TOLERANCE
    assert np.abs(sod.emeasure_curve(pred, gt) - reference["curve"]).max() < TOLERANCE
    assert abs(sod.adaptive_emeasure(pred, gt) - reference["adpEm"]) < TOLERANCE
    assert abs(sod.smeasure(pred, gt) - reference["Sm"]) < TOLERANCE
    assert abs(sod.weighted_fmeasure(pred, gt) - reference["wFm"]) < TOLERANCE


def test_threshold_counts_count_pixels_at_or_above_each_level(rng):
    pred_u8, gt_u8 = random_pair((20, 30), rng)
    gt = gt_u8 > 128
    tp, fp = sod.threshold_counts(pred_u8 / 255.0, gt)
    for level in (0, 1, 100, 254, 255):
        assert tp[level] == np.count_nonzero((pred_u8 >= level) & gt)
        assert fp[level] == np.count_nonzero((pred_u8 >= level) & ~gt)


def test_perfect_prediction_scores_one_and_inverse_scores_low(rng):
    pred_u8, gt_u8 = realistic_pair((40, 40), rng)
    gt = gt_u8 > 128
    perfect = gt.astype(np.float64)
    assert sod.mae(perfect, gt) == 0
    assert sod.emeasure_curve(perfect, gt)[1:].min() == pytest.approx(1.0, abs=1e-3)
    assert sod.smeasure(perfect, gt) == pytest.approx(1.0, abs=1e-6)
    assert sod.weighted_fmeasure(perfect, gt) == pytest.approx(1.0, abs=1e-6)
    inverse = 1 - perfect
    assert sod.mae(inverse, gt) == 1
    assert sod.emeasure_curve(inverse, gt).mean() < 0.2
