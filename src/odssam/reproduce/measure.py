"""What ``odssam compare`` measures with the trained models: size, speed and predictions to draw.

* Parameters and FLOPs of the learnable modules: :func:`odssam.models.profiling.profile_model`
  of the run's model config (shape-only, no weights loaded).
* Prediction speed: the run's final model through :class:`~odssam.inference.predictor.Predictor`
  (the one inference path of ``odssam predict``) on its own test images, on this device:
  one warm-up batch, then ``count`` images (the test images repeated if there are fewer) in
  batches of ``batch_size``. Images are decoded beforehand: decoding is not timed.
* The figure: the same seeded choice of test images for every method, one probability
  column per method (:func:`odssam.metrics.figures.save_figure_grid`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from odssam.config import DataConfig, ModelConfig, from_dict
from odssam.data.sample import Sample
from odssam.errors import OdsSamError
from odssam.reproduce.run_folders import FinishedRun

FIGURE_CELL = 192  # pixels, the longest side of each image in the figure


def learnable_size(model: dict[str, Any]) -> tuple[int, int, bool]:
    """``(parameters, FLOPs, has a frozen segmenter)`` of a run's model config.

    Parameters and FLOPs (one image) are the learnable modules'.
    """
    from odssam.models.profiling import profile_model

    report = profile_model(from_dict(ModelConfig, model, "model"))
    learnable = report["learnable"]
    return int(learnable["params"]), int(learnable["flops"]), bool(report["frozen"])


def test_dataset(run: FinishedRun, test_set: str):
    """The run's ``test_set`` as it split it (its split record); items decode lazily to :class:`Sample`.

    Raises:
        OdsSamError: The test images cannot be listed here (moved data, bad config).
    """
    from odssam.engine.setup import build_split

    dcfg = from_dict(DataConfig, run.data, "data")
    if dcfg.test_sets:
        return build_split(dcfg, "test", category=test_set)
    return build_split(dcfg, "test", split_file=run.path / "splits" / "split.json")


def first_images(dataset, count: int) -> list[np.ndarray]:
    """HxWx3 uint8 images of the first ``count`` samples (fewer if the dataset is smaller)."""
    return [dataset[index].image for index in range(min(count, len(dataset)))]


def choose_samples(dataset, count: int, seed: int) -> list[Sample]:
    """``count`` samples (all if fewer) drawn with ``seed``, decoded, in their split order."""
    picked = np.random.default_rng(seed).choice(len(dataset), size=min(count, len(dataset)), replace=False)
    return [dataset[int(index)] for index in sorted(picked)]


def load_predictor(run: FinishedRun, device: str, batch_size: int, sam_checkpoint: str | None = None):
    """The run's final model on ``device`` (precision ``auto``: bf16 on CUDA).

    Args:
        sam_checkpoint: SAM weights to use instead of the path in the run's config.
    """
    from odssam.inference.predictor import Predictor

    return Predictor.from_checkpoint(
        run.checkpoint, device=device, sam_checkpoint=sam_checkpoint, batch_size=batch_size, num_workers=0
    )


def images_per_second(predictor, images: list[np.ndarray], count: int, batch_size: int) -> float:
    """Prediction throughput on ``count`` images (after one warm-up batch), decoding excluded.

    ``predict_batch`` returns the maps on the host, so every timed batch has finished on the device.
    """
    if not images:
        raise OdsSamError("no test images to time the prediction on")
    timed = [images[index % len(images)] for index in range(count)]
    predictor.predict_batch(timed[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    predictor.predict_batch(timed, batch_size=batch_size)
    return count / max(time.perf_counter() - start, 1e-9)


def probability_maps(predictor, samples: list[Sample], batch_size: int) -> list[np.ndarray]:
    """HxW probability maps of ``samples`` at their image size."""
    predictions = predictor.predict_batch([s.image for s in samples], batch_size=batch_size)
    return [prediction.probability for prediction in predictions]


def save_method_figure(
    path: Path, samples: list[Sample], maps_by_method: dict[str, list[np.ndarray]]
) -> Path:
    """Image, ground truth and one probability column per method (no overlay: no method is singled out)."""
    from odssam.metrics.figures import save_figure_grid

    # Cells wide enough for the longest method label as a column title (about 8 px a character).
    cell_size = max(FIGURE_CELL, 8 * max(len(label) for label in maps_by_method))
    return save_figure_grid(
        path,
        [s.image for s in samples],
        [s.mask for s in samples],
        maps_by_method,
        overlay=None,
        cell_size=cell_size,
        row_labels=[s.name for s in samples],
    )
