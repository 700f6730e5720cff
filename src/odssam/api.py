"""The Python API in one call: ``odssam.load(checkpoint)`` gives a ready :class:`Predictor`.

Example (runnable as is: a one-epoch demo on generated data makes the checkpoint; with
random SAM weights the scores mean nothing, the calls are the real ones)::

    import tempfile
    import numpy as np
    import odssam
    from odssam.demo import DemoOptions, run_demo

    folder = tempfile.mkdtemp()
    demo = run_demo(DemoOptions(output=f"{folder}/demo", random_sam=True, per_defect=2,
                                image_size=64, epochs=1, progress=False))
    model = odssam.load(demo.checkpoint, device="cpu")              # device="auto": GPU if present
    result = model.predict(np.full((240, 320, 3), 128, np.uint8))  # array, PIL image or path
    print(result.score, result.area_fraction, result.mask.shape)   # max probability, mask share, (240, 320)
    results = model.predict_batch([f"{folder}/demo/data/fabric/test/blob/000.png", result.probability])
    print([r.name for r in results])                               # ['000', 'image_0001']
"""

from __future__ import annotations

import os
from typing import Any

from odssam.inference.predictor import Predictor


def load(
    checkpoint: str | os.PathLike,
    device: str = "auto",
    *,
    sam_checkpoint: str | None = None,
    threshold: float = 0.5,
    precision: str = "auto",
    batch_size: int = 8,
    num_workers: int | None = None,
) -> Predictor:
    """Load a trained ODS-SAM model for prediction.

    Args:
        checkpoint: An odssam training checkpoint (``<run>/best.pt`` or ``last.pt``).
        device: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        sam_checkpoint: The SAM weights file, when the path recorded in the checkpoint
            does not exist on this machine (same weights, another folder).
        threshold: Probability above which a pixel is anomalous (``Prediction.mask``).
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on the CPU), ``bf16`` or ``fp32``.
        batch_size: Images per forward pass of :meth:`Predictor.predict_batch`.
        num_workers: Threads decoding images ahead of the model (default: up to 8 with a GPU, 2 on the CPU).

    Returns:
        A :class:`~odssam.inference.predictor.Predictor`: ``predict(image)`` for one
        numpy array, PIL image or path, ``predict_batch(images)`` for several; each gives
        a :class:`~odssam.inference.predictor.Prediction` (``probability``, ``mask``,
        ``score``, ``area_fraction``, ``name``) at the image's original size.

    Raises:
        OdsSamError: Missing or unreadable checkpoint, SAM weights that differ from the
            ones used in training, or an unavailable device.

    Example::

        model = odssam.load("runs/mvtec_bottle/last.pt", device="cpu")
        result = model.predict("bottle.png")
        result.mask.shape == result.probability.shape  # the image's height and width
    """
    kwargs: dict[str, Any] = dict(
        threshold=threshold, precision=precision, batch_size=batch_size, num_workers=num_workers
    )
    return Predictor.from_checkpoint(checkpoint, device, sam_checkpoint=sam_checkpoint, **kwargs)
