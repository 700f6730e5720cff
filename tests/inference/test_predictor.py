"""Predictor and odssam.load: inputs of every kind, batching, unreadable files, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_rgb
from PIL import Image

import odssam
from odssam.errors import OdsSamError
from odssam.inference import Prediction, Predictor
from odssam.inference.batch import predict_probabilities


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint) -> Predictor:
    return odssam.load(tiny_checkpoint, device="cpu", num_workers=2, batch_size=2)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return random_rgb(np.random.default_rng(1), 45, 61)


def test_load_returns_a_predictor_with_the_training_config(predictor):
    assert isinstance(predictor, Predictor)
    assert predictor.device.type == "cpu"
    assert predictor.config.model.sam.variant == "vit_micro"
    assert predictor.image_size == 256


def test_prediction_fields_are_consistent(predictor, picture):
    result = predictor.predict(picture, name="sample")
    assert isinstance(result, Prediction)
    assert result.name == "sample"
    assert result.probability.shape == result.mask.shape == (45, 61)
    assert result.probability.dtype == np.float32 and result.mask.dtype == np.bool_
    np.testing.assert_array_equal(result.mask, result.probability > 0.5)
    assert result.score == float(result.probability.max())  # reduced on the device: the very same value
    assert result.area_fraction == pytest.approx(float(result.mask.mean()))
    assert 0.0 <= result.probability.min() and result.probability.max() <= 1.0


def test_matches_the_model_reference_pipeline(predictor, picture):
    reference = predict_probabilities(predictor.model, [picture])[0]
    np.testing.assert_allclose(predictor.predict(picture).probability, reference, atol=1e-6)


def test_array_pil_and_path_give_the_same_prediction(predictor, picture, tmp_path):
    path = tmp_path / "picture.png"
    Image.fromarray(picture).save(path)
    from_array = predictor.predict(picture)
    from_pil = predictor.predict(Image.fromarray(picture))
    from_path = predictor.predict(path)
    from_text = predictor.predict(str(path))
    assert from_path.name == from_text.name == "picture" and from_path.source == str(path)
    for other in (from_pil, from_path, from_text):
        np.testing.assert_allclose(other.probability, from_array.probability, atol=1e-6)


def test_grey_16_bit_and_float_inputs_equal_their_8_bit_rgb(predictor):
    grey = np.random.default_rng(2).integers(0, 256, (30, 40), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    expected = predictor.predict(rgb).probability
    for variant in (grey, grey.astype(np.uint16) * 257, grey.astype(np.float32) / 255.0, Image.fromarray(grey)):
        np.testing.assert_allclose(predictor.predict(variant).probability, expected, atol=1e-5)


def test_batches_equal_single_predictions_in_order(predictor):
    rng = np.random.default_rng(3)
    images = [random_rgb(rng, height, width) for height, width in [(20, 30), (50, 25), (32, 32)]]
    singles = [predictor.predict(image).probability for image in images]
    batched = predictor.predict_batch(images, batch_size=2, names=["a", "b", "c"])
    assert [p.name for p in batched] == ["a", "b", "c"]
    for single, prediction in zip(singles, batched):
        assert prediction.probability.shape == single.shape
        np.testing.assert_allclose(prediction.probability, single, atol=1e-5)


def test_stream_reports_unreadable_files_in_place_and_finishes_the_rest(predictor, image_folder):
    sources = [image_folder / "rgb.png", image_folder / "broken.png", image_folder / "gray.jpg"]
    results = list(predictor.predict_stream(sources, batch_size=2, keep_images=True))
    assert [r.name for r in results] == ["rgb", "broken", "gray"]
    assert [r.ok for r in results] == [True, False, True]
    assert "broken.png" in results[1].error
    assert results[0].image.shape == (40, 56, 3) and results[0].prediction.size == (40, 56)
    assert results[2].prediction.size == (33, 47)


def test_predict_batch_raises_on_an_unreadable_file(predictor, image_folder):
    with pytest.raises(OdsSamError, match="broken.png"):
        predictor.predict_batch([image_folder / "rgb.png", image_folder / "broken.png"])


@pytest.mark.parametrize(
    "bad, message",
    [
        (12, "int"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 5, 7), np.uint8), "shape"),
        ("missing-file.png", "missing-file.png"),
    ],
    ids=["number", "empty-array", "seven-channels", "missing-path"],
)
def test_bad_inputs_are_user_errors(predictor, bad, message):
    with pytest.raises(OdsSamError, match=message):
        predictor.predict(bad)


def test_bad_settings_are_user_errors(predictor, monkeypatch, tiny_checkpoint):
    with pytest.raises(OdsSamError, match="threshold"):
        Predictor(predictor.model, device="cpu", threshold=1.5)
    with pytest.raises(OdsSamError, match="precision"):
        Predictor(predictor.model, device="cpu", precision="fp8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(OdsSamError, match="CUDA is not available"):
        odssam.load(tiny_checkpoint, device="cuda")


def test_threshold_changes_the_mask_only(tiny_checkpoint, picture):
    strict = odssam.load(tiny_checkpoint, device="cpu", threshold=0.0, num_workers=0).predict(picture)
    assert strict.mask.all() and strict.area_fraction == 1.0 and strict.threshold == 0.0


def test_load_of_a_missing_checkpoint_names_it(tmp_path):
    with pytest.raises(OdsSamError, match="nothing.pt"):
        odssam.load(tmp_path / "nothing.pt", device="cpu")
