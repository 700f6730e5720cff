"""Prediction on any images: the :class:`Predictor`, input expansion and output writers.

::

    from odssam.inference import Predictor, PredictionWriter, expand_inputs

    predictor = Predictor.from_checkpoint("runs/demo/last.pt", device="auto")
    with PredictionWriter("predictions") as writer:
        for result in predictor.predict_stream(expand_inputs(["photos/"]), keep_images=True):
            if result.ok:
                writer.submit(result.prediction, result.image)
"""

from odssam.inference.io import (
    CSV_COLUMNS,
    PROBABILITY_FORMATS,
    InputImage,
    PredictionWriter,
    expand_inputs,
    mask_contour,
    overlay_image,
    overlay_thickness,
    read_predictions_csv,
    to_rgb,
    write_mask_png,
    write_overlay_png,
    write_predictions_csv,
    write_probability_npy,
    write_probability_png,
)
from odssam.inference.predictor import Prediction, PredictionResult, Predictor
from odssam.inference.prefetch import Outcome, prefetch_map
from odssam.utils.device import resolve_device

__all__ = [
    "CSV_COLUMNS",
    "PROBABILITY_FORMATS",
    "InputImage",
    "Outcome",
    "Prediction",
    "PredictionResult",
    "PredictionWriter",
    "Predictor",
    "expand_inputs",
    "mask_contour",
    "overlay_image",
    "overlay_thickness",
    "prefetch_map",
    "read_predictions_csv",
    "resolve_device",
    "to_rgb",
    "write_mask_png",
    "write_overlay_png",
    "write_predictions_csv",
    "write_probability_npy",
    "write_probability_png",
]
