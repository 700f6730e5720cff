"""The one inference path: staging, device-side preprocessing, one batch in flight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_rgb, tiny_model_config

from odssam.inference.batch import (
    BatchInference,
    HostBatch,
    NonFiniteOutput,
    PendingMaps,
    maps_to_host,
    one_in_flight,
    predict_probabilities,
    stage_image,
)
from odssam.models.ods_sam import build_ods_sam

SIZES = [(45, 61), (20, 30), (64, 64)]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_ods_sam(tiny_model_config()).eval()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [random_rgb(rng, height, width) for height, width in SIZES]


def test_pixels_staged_for_a_gpu_give_the_input_staged_on_the_cpu(model, images):
    # A GPU gets raw pixels and resizes them itself; run that path on the CPU to compare.
    gpu_staged = [stage_image(image, model.preprocess_spec, torch.device("cuda"), pin=False) for image in images]
    assert all(s.x is None and s.pixels.dtype == torch.uint8 and not s.pixels.is_pinned() for s in gpu_staged)
    inference = BatchInference(model, torch.device("cpu"))
    from_pixels = inference.prepare(gpu_staged)
    from_host = inference.prepare([inference.stage(image) for image in images])
    assert from_pixels.input_sizes == from_host.input_sizes
    assert from_pixels.original_sizes == from_host.original_sizes == SIZES
    torch.testing.assert_close(from_pixels.x, from_host.x, atol=1e-5, rtol=0)


def test_launch_gives_the_reference_maps(model, images):
    inference = BatchInference(model)
    launched = inference.launch(HostBatch(None, [inference.stage(image) for image in images]).pin_memory().images)
    for probability, reference, size in zip(launched.wait(), predict_probabilities(model, images), SIZES):
        assert probability.shape == size and probability.dtype == np.float32
        np.testing.assert_allclose(probability, reference, atol=1e-6)
    assert inference.launch([]).wait() == []


def test_encode_gives_the_model_embedding(model, images):
    inference = BatchInference(model)
    x = inference.prepare([inference.stage(image) for image in images]).x
    with torch.no_grad():
        expected = model.encode(x)
    embedding = inference.encode(x)
    assert len(embedding) == len(expected)
    for part, reference in zip(embedding, expected):
        assert torch.equal(part, reference)


def test_one_in_flight_launches_the_next_batch_before_handing_over_the_last():
    events = []

    def launch(batch: str) -> PendingMaps:
        events.append(f"launch {batch}")
        return PendingMaps([torch.full((2, 2), float(len(events)))])

    for batch, maps in one_in_flight(["a", "b", "c"], launch):
        events.append(f"use {batch}")
        assert maps[0].shape == (2, 2)
    assert events == ["launch a", "launch b", "use a", "launch c", "use b", "use c"]
    assert list(one_in_flight([], launch)) == []


def test_maxima_reduced_with_the_maps_equal_the_host_maxima(model, images):
    inference = BatchInference(model)
    maps, maxima = inference.launch([inference.stage(image) for image in images]).wait_with_maxima()
    assert maxima == [float(probability.max()) for probability in maps]  # exactly: a maximum is one of the values
    assert all(type(value) is float for value in maxima)


def test_maps_without_maxima_are_checked_and_scored_on_the_host():
    maps, maxima = PendingMaps([torch.tensor([[0.25, 0.75]]), torch.zeros(2, 3)]).wait_with_maxima()
    assert maxima == [0.75, 0.0] and [m.shape for m in maps] == [(1, 2), (2, 3)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_maximum_refuses_the_batch(bad):
    maps = [torch.ones(2, 2), torch.tensor([[0.5, bad]])]
    pending = PendingMaps(maps, maxima=torch.stack([m.amax() for m in maps]))
    with pytest.raises(NonFiniteOutput, match="image 2 of its batch"):
        pending.wait()


def test_a_nan_logit_gives_a_nan_maximum_on_the_device_path(model):
    logits = torch.zeros(2, 1, model.logit_size, model.logit_size)
    logits[1, 0, :8, :8] = float("nan")  # the top-left corner of image 2
    pending = maps_to_host(model, logits, [(model.image_size,) * 2] * 2, [(20, 30), (20, 30)])
    with pytest.raises(NonFiniteOutput, match="image 2 of its batch"):
        pending.wait_with_maxima()


def test_one_in_flight_collects_with_the_given_function():
    collected = list(one_in_flight([1, 2], lambda batch: PendingMaps([torch.full((1, 1), 0.1 * batch)]), PendingMaps.wait_with_maxima))
    assert [(batch, maxima) for batch, (_, maxima) in collected] == [(1, [pytest.approx(0.1)]), (2, [pytest.approx(0.2)])]
