"""Run an exported model with onnxruntime, NumPy and Pillow only (no PyTorch).

Example::

    from odssam.export.runtime import OnnxPredictor

    predictor = OnnxPredictor("exported/")          # the folder written by ``odssam export``
    result = predictor.predict("image.png")         # or an HxWx3 uint8 array / PIL image
    result.probability.shape, result.mask, result.score

Preprocessing and postprocessing follow :mod:`odssam.models.transforms` with the
segmenter's settings recorded in the metadata (``resize``: SAM's ``longest_side`` with
zero padding, or SAM 2's ``stretch``; ``pixel_mean``, ``pixel_std``): Pillow's antialiased
bilinear resize for the input (what PyTorch's ``antialias=True`` mirrors) and a NumPy
bilinear resize (half-pixel centres, no antialiasing) for the logits, so results match the
PyTorch predictor up to small resampling differences. The encoder's outputs (one per
embedding part) feed the decoder's inputs of the same names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from odssam.errors import OdsSamError

METADATA_FILE = "odssam_onnx.json"
RESIZE_MODES = ("longest_side", "stretch")  # as odssam.models.transforms, which imports torch


def create_session(path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None):
    """An onnxruntime session for one graph (CPU unless ``providers`` says otherwise)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise OdsSamError("running ONNX graphs needs 'onnxruntime': pip install onnxruntime") from error
    path = Path(path)
    if not path.is_file():
        raise OdsSamError(f"{path}: ONNX graph not found")
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise OdsSamError(f"{path}: onnxruntime cannot load the graph ({error})") from error


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of the second tap, as PyTorch's bilinear with ``align_corners=False``."""
    source = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    first = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    second = np.minimum(first + 1, in_size - 1)
    return first, second, (source - first).astype(np.float32)


def resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize the last two axes of a float array (no antialiasing, half-pixel centres)."""
    if array.shape[-2:] == (height, width):
        return array
    top, bottom, row_weight = _linear_taps(array.shape[-2], height)
    rows = array[..., top, :] * (1 - row_weight)[:, None] + array[..., bottom, :] * row_weight[:, None]
    left, right, col_weight = _linear_taps(array.shape[-1], width)
    return rows[..., left] * (1 - col_weight) + rows[..., right] * col_weight


def _as_rgb(image: Any) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                return np.asarray(opened.convert("RGB"))
        except (OSError, ValueError) as error:
            raise OdsSamError(f"{image}: not a readable image ({error})") from error
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8 or array.size == 0:
        raise OdsSamError(f"expected an HxW or HxWx3 uint8 image, got shape {array.shape} dtype {array.dtype}")
    return array[:, :, :3]


@dataclass
class OnnxPrediction:
    """Output for one image: as :class:`odssam.inference.predictor.Prediction`, without a name."""

    probability: np.ndarray
    mask: np.ndarray
    score: float
    area_fraction: float


class OnnxPredictor:
    """Predicts with the graphs of an ``odssam export`` folder.

    Args:
        onnx_dir: Folder with ``image_encoder.onnx``, ``prompt_decoder.onnx`` and ``odssam_onnx.json``
            (or ``model.onnx`` alone for a model without a frozen segmenter).
        providers: onnxruntime execution providers (default: CPU).
        threshold: Mask threshold (default: the one recorded at export).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
    """

    def __init__(
        self,
        onnx_dir: str | os.PathLike,
        providers: list[str] | None = None,
        threshold: float | None = None,
        threads: int | None = None,
    ):
        folder = Path(onnx_dir)
        metadata_path = folder / METADATA_FILE
        try:
            self.metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise OdsSamError(f"{metadata_path}: not found; is {folder} a folder written by 'odssam export'?") from error
        except (OSError, ValueError) as error:
            raise OdsSamError(f"{metadata_path}: unreadable ({error})") from error
        self.image_size = int(self.metadata["image_size"])
        # Exports made before the segmenter seam carry no resize mode: they are SAM's.
        self.resize = self.metadata.get("resize", "longest_side")
        if self.resize not in RESIZE_MODES:
            raise OdsSamError(
                f"{metadata_path}: resize '{self.resize}' is not one of {', '.join(RESIZE_MODES)}; "
                "was it written by a newer odssam?"
            )
        self.mean = np.asarray(self.metadata["pixel_mean"], dtype=np.float32)
        self.std = np.asarray(self.metadata["pixel_std"], dtype=np.float32)
        self.threshold = float(self.metadata.get("threshold", 0.5) if threshold is None else threshold)
        # No encoder graph for a model without a frozen segmenter: the decoder is the whole model.
        encoder = self.metadata["encoder"]
        self.encoder = create_session(folder / encoder, providers, threads) if encoder else None
        self.decoder = create_session(folder / self.metadata["decoder"], providers, threads)
        self.embedding_names = [output.name for output in self.encoder.get_outputs()] if self.encoder else []

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(h, w)`` of a ``height x width`` image inside the ``S x S`` input (before padding)."""
        if self.resize == "stretch":
            return self.image_size, self.image_size
        scale = self.image_size / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def preprocess(self, image: Any) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Image -> (1x3xSxS float32, resized (h, w), original (H, W))."""
        rgb = _as_rgb(image)
        height, width = rgb.shape[:2]
        resized_size = self.resized_size(height, width)
        channels = []
        for channel in range(3):
            plane = Image.fromarray(rgb[:, :, channel].astype(np.float32))
            if resized_size != (height, width):
                plane = plane.resize(resized_size[::-1], Image.Resampling.BILINEAR)
            channels.append(np.asarray(plane, dtype=np.float32))
        normalised = (np.stack(channels) - self.mean[:, None, None]) / self.std[:, None, None]
        x = np.zeros((1, 3, self.image_size, self.image_size), dtype=np.float32)
        x[0, :, : resized_size[0], : resized_size[1]] = normalised
        return x, resized_size, (height, width)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed Bx3xSxS -> logits Bx1x(4h)x(4w) (Bx1x(S/4)x(S/4) for SAM; Bx1xSxS for ``unet``)."""
        embedding = self.encoder.run(self.embedding_names, {"image": x}) if self.encoder is not None else []
        return self.decoder.run(None, {"image": x, **dict(zip(self.embedding_names, embedding))})[0]

    def predict(self, image: Any) -> OnnxPrediction:
        """Predict one image (path, PIL image or HxW / HxWx3 uint8 array)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list[Any]) -> list[OnnxPrediction]:
        """Predict several images in one run of each graph."""
        prepared = [self.preprocess(image) for image in images]
        logits = self.logits(np.concatenate([x for x, _, _ in prepared]))
        results = []
        for logit_map, (_, (height, width), original) in zip(logits[:, 0], prepared):
            full = resize_bilinear(logit_map, self.image_size, self.image_size)[:height, :width]
            full = resize_bilinear(full, *original)
            probability = (1.0 / (1.0 + np.exp(-full))).astype(np.float32)
            mask = probability > self.threshold
            results.append(OnnxPrediction(probability, mask, float(probability.max()), float(mask.mean())))
        return results
