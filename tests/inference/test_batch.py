"""The one inference path: staging, device-side preprocessing, one batch in flight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_rgb, tiny_model_config

from odssam.inference.batch import (
    BatchInference,
    HostBatch,
    PendingMaps,
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
