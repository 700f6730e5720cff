"""Large segmenters on the CPU: a memory warning before the work, an ETA after the first batch.

Building ViT-H on a test machine is too slow, so the tiny model stands in for it under the
name ``vit_h``: the warnings read the segmenter's variant and the model's device only.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import random_ellipse, random_rgb, save_image, tiny_model_config

from odssam.data import build_dataset
from odssam.engine.cache import CacheParams, EmbeddingCache, build_embedding_cache
from odssam.engine.evaluate import evaluate_dataset
from odssam.inference import Predictor
from odssam.models.ods_sam import build_ods_sam
from odssam.utils.large_on_cpu import CPU_MEMORY_GB, eta_after_first_batch, warn_large_model_on_cpu

MEMORY_WARNING = "vit_h on the CPU: expect about 16 GB of memory"


def _warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


@pytest.fixture(scope="module")
def tiny_model():
    torch.set_num_threads(1)
    return build_ods_sam(tiny_model_config()).eval()


@pytest.fixture
def posing_as_vit_h(tiny_model):
    """The tiny model, its segmenter named ``vit_h`` for the duration of a test."""
    tiny_model.segmenter.variant = "vit_h"
    yield tiny_model
    tiny_model.segmenter.variant = "vit_micro"


class _Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_small_variants_and_other_devices_say_nothing(tiny_model, caplog):
    with caplog.at_level(logging.WARNING):
        assert warn_large_model_on_cpu(tiny_model) is None
        batches = [[1, 2], [3]]
        assert eta_after_first_batch(batches, tiny_model, total_images=3) is batches
        on_meta = build_ods_sam(tiny_model_config()).to("meta")  # not the CPU: no warning
        on_meta.segmenter.variant = "vit_h"
        assert warn_large_model_on_cpu(on_meta) is None
    assert _warnings(caplog) == []
    assert CPU_MEMORY_GB["vit_h"] == 16.0


def test_memory_warning_before_the_work(posing_as_vit_h, caplog):
    with caplog.at_level(logging.WARNING):
        message = warn_large_model_on_cpu(posing_as_vit_h)
    assert message.startswith(MEMORY_WARNING)
    assert _warnings(caplog) == [message]


def test_eta_after_the_first_batch_from_its_time_per_image(posing_as_vit_h, caplog):
    batches = [[0, 1], [2, 3], [4, 5], [6]]
    clock = _Clock(step=42.0)  # the first batch of 2 images takes 42 s
    with caplog.at_level(logging.WARNING):
        timed = eta_after_first_batch(batches, posing_as_vit_h, total_images=7, announce=False, clock=clock)
        assert next(iter(timed)) == [0, 1] and _warnings(caplog) == []  # nothing before the batch is done
    with caplog.at_level(logging.WARNING):
        timed = eta_after_first_batch(batches, posing_as_vit_h, total_images=7, clock=clock)
        seen = list(timed)
    assert seen == batches
    memory, eta = _warnings(caplog)
    assert memory.startswith(MEMORY_WARNING)
    assert eta == "vit_h on the CPU: 21.0 s per image on the first batch; about 2:27 for all 7 images"


def test_predictor_warns_at_load_and_gives_the_eta_after_its_first_batch(posing_as_vit_h, caplog):
    images = [np.full((24, 32, 3), value, np.uint8) for value in (0, 80, 160, 240, 255)]
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(posing_as_vit_h, device="cpu", batch_size=2, num_workers=0)
        assert len(predictor.predict_batch(images)) == 5
        predictor.predict(images[0])  # one image: no ETA
    memory, eta = _warnings(caplog)
    assert memory.startswith(MEMORY_WARNING)
    assert eta.startswith("vit_h on the CPU: ") and eta.endswith("for all 5 images")


def test_evaluation_and_the_training_cache_give_the_eta(posing_as_vit_h, tmp_path, caplog):
    rng = np.random.default_rng(0)
    for index in range(3):
        save_image(random_rgb(rng, 32, 32), tmp_path / "data" / "test" / "images" / f"{index}.png")
        mask = random_ellipse((32, 32), rng, (0.3, 0.7), (0.1, 0.3))
        save_image(mask, tmp_path / "data" / "test" / "masks" / f"{index}.png")
    dataset = build_dataset("folder", tmp_path / "data", "test")
    with caplog.at_level(logging.WARNING):
        evaluate_dataset(posing_as_vit_h, dataset, name="test", batch_size=2)
    memory, eta = _warnings(caplog)
    assert memory.startswith(MEMORY_WARNING) and eta.endswith("for all 3 images")
    caplog.clear()
    model = posing_as_vit_h
    params = CacheParams(model.frozen_fingerprint(), model.image_size, model.prompt_input_size, None)
    with caplog.at_level(logging.WARNING):
        build_embedding_cache(model, dataset, EmbeddingCache(tmp_path / "cache", params), batch_size=2)
    (eta,) = _warnings(caplog)  # training warned about memory when it built the model
    assert eta.endswith("for all 3 images")


def test_training_warns_when_it_builds_the_model(posing_as_vit_h, tmp_path, monkeypatch, caplog, capsys):
    from odssam.config import ExperimentConfig
    from odssam.engine import run_setup
    from odssam.engine.distributed import DistInfo

    monkeypatch.setattr(run_setup, "build_model", lambda cfg, feature_encoder_weights: posing_as_vit_h)
    cfg = ExperimentConfig(model=tiny_model_config())
    ctx = run_setup.RunContext(cfg, DistInfo(), run_setup.RunFolder(tmp_path), None, False, False)
    with caplog.at_level(logging.WARNING):
        run_setup.build_training_model(ctx, resuming=False)
    (memory,) = _warnings(caplog)
    assert memory.startswith(MEMORY_WARNING)
    assert "SAM vit_micro at 256px: RANDOM weights (init_seed 0): scores are not meaningful" in capsys.readouterr().out
