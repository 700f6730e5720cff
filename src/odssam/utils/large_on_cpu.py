"""Large frozen segmenters on the CPU: a warning before the work, an ETA after the first batch.

SAM ViT-H at 1024 px runs on a CPU, but needs about 16 GB of memory and tens of seconds
per image: a job of a few hundred images takes hours. Before prediction, evaluation or
training starts on the CPU with such a model, :func:`warn_large_model_on_cpu` says what to
expect; :func:`eta_after_first_batch` times the first batch and prints the time per image
and the whole job's ETA. The small test variants (``vit_tiny``, ``vit_micro``, ...) say nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from odssam.utils.progress import format_duration

logger = logging.getLogger("odssam")

# Memory of fp32 inference on the CPU at 1024 px, in GB (as measured for issue 15). A variant
# listed here is "large": the warnings name it; others (vit_b, the test variants) say nothing.
CPU_MEMORY_GB: dict[str, float] = {
    "vit_h": 16.0,
}


def _variant_and_device(model: torch.nn.Module) -> tuple[str | None, torch.device]:
    segmenter = getattr(model, "segmenter", None)
    variant = getattr(segmenter, "variant", None)
    parameter = next(model.parameters(), None)
    return variant, parameter.device if parameter is not None else torch.device("cpu")


def large_variant_on_cpu(model: torch.nn.Module) -> str | None:
    """The frozen segmenter's variant if it is a large one (:data:`CPU_MEMORY_GB`) on the CPU, else ``None``."""
    variant, device = _variant_and_device(model)
    return variant if device.type == "cpu" and variant in CPU_MEMORY_GB else None


def warn_large_model_on_cpu(model: torch.nn.Module) -> str | None:
    """Log the memory and time a large segmenter needs on the CPU, before the work starts.

    Args:
        model: A :class:`~odssam.models.base.SegmentationModel` on its device.

    Returns:
        The warning, or ``None`` (a GPU, or a small variant).
    """
    variant = large_variant_on_cpu(model)
    if variant is None:
        return None
    message = (
        f"{variant} on the CPU: expect about {CPU_MEMORY_GB[variant]:.0f} GB of memory and tens of seconds "
        "per image (a GPU is far faster: --device cuda); the time per image follows the first batch"
    )
    logger.warning(message)
    return message


def eta_after_first_batch(
    batches: Iterable,
    model: torch.nn.Module,
    *,
    total_images: int,
    images_in: Callable[[Any], int] = len,
    announce: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterable:
    """``batches``, timed: after the first one, log its time per image and the job's ETA.

    The first batch counts as done when the second is asked for (the caller has then run
    the model on it). Nothing changes for a GPU or a small variant: ``batches`` is returned.

    Args:
        batches: The batches the job iterates (a loader, a generator).
        model: The model that runs on them (its segmenter variant and device decide).
        total_images: Images in the whole job.
        images_in: Number of images in one batch.
        announce: Also log :func:`warn_large_model_on_cpu` now, before the work (``False``
            when the caller already did).
        clock: Seconds (tests pass a fake one).
    """
    variant = large_variant_on_cpu(model)
    if variant is None:
        return batches
    if announce:
        warn_large_model_on_cpu(model)
    return _timed(batches, variant, total_images, images_in, clock)


def _timed(batches: Iterable, variant: str, total_images: int, images_in: Callable[[Any], int], clock) -> Iterator:
    start = clock()
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return
    yield first
    per_image = (clock() - start) / max(images_in(first), 1)
    logger.warning(
        f"{variant} on the CPU: {per_image:.1f} s per image on the first batch; "
        f"about {format_duration(per_image * total_images)} for all {total_images} images"
    )
    yield from iterator
