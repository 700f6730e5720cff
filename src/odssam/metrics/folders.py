"""Score a folder of prediction maps against a folder of ground-truth masks.

Files are matched by stem (or by relative path without extension with ``recursive``), so any
method's output can be scored, ours or a baseline's. Predictions are 8-bit (or 16-bit)
probability maps or binary masks; ground truths are masks in PNG, JPEG, BMP or TIFF,
binarised at ``> 127`` (JPEG masks such as Kvasir-SEG's carry compression noise).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from odssam.errors import OdsSamError
from odssam.metrics.evaluator import DEFAULT_METRICS, Evaluator
from odssam.metrics.inputs import as_probability
from odssam.metrics.result import MetricResult

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MAX_LISTED = 5


def read_map(path: str | Path) -> np.ndarray:
    """Read a single-channel map: ``uint8``, ``uint16``, ``bool`` or ``float32`` ``HxW``.

    Colour files are converted to luminance (ITU-R 601, as PIL's "L" mode); TIFFs PIL cannot
    open are read with ``tifffile``.

    Raises:
        OdsSamError: If the file cannot be read or has no single-channel interpretation.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            array = _from_pil(image, path)
    except (UnidentifiedImageError, OSError) as error:
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise OdsSamError(f"{path}: cannot read image ({error})") from error
        array = _read_tiff(path)
    if array.ndim != 2:
        raise OdsSamError(f"{path}: expected a single-channel map, got shape {array.shape}")
    return array


def _from_pil(image: Image.Image, path: Path) -> np.ndarray:
    if image.mode == "1":
        return np.asarray(image, dtype=bool)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise OdsSamError(f"{path}: 32-bit integer map outside 0..65535")
        return array.astype(np.uint8 if array.max() <= 255 else np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode == "LA":
        return np.asarray(image.getchannel("L"))
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        array = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for damaged files
        raise OdsSamError(f"{path}: cannot read TIFF ({error})") from error
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(array[..., :3])).convert("L"))
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def prediction_from_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Prediction map -> float64 probabilities in [0, 1] (k/255 for 8-bit files), see :func:`as_probability`.

    Raises:
        OdsSamError: Naming ``path``, for a map :func:`as_probability` rejects.
    """
    try:
        return as_probability(array)
    except ValueError as error:
        raise OdsSamError(f"{path}: {error}") from error


def mask_from_array(array: np.ndarray, path: Path, threshold: int = 127) -> np.ndarray:
    """Ground-truth map -> bool mask: ``> threshold`` on the 8-bit scale."""
    if array.dtype == np.bool_:
        return array
    if array.dtype == np.uint8:
        return array > threshold
    if array.dtype == np.uint16:
        return array > threshold * 257
    if np.issubdtype(array.dtype, np.floating):
        return array > threshold / 255
    raise OdsSamError(f"{path}: unsupported ground-truth type {array.dtype}")


@dataclass(frozen=True)
class MatchedPair:
    """A prediction file and its ground truth (``None``: an all-normal image, empty mask)."""

    key: str
    prediction: Path
    ground_truth: Path | None


def _index_folder(folder: Path, recursive: bool, strip_suffix: str, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise OdsSamError(f"{folder}: {role} folder does not exist")
    pattern = "**/*" if recursive else "*"
    index: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        key = path.relative_to(folder).with_suffix("").as_posix() if recursive else path.stem
        if strip_suffix and key.endswith(strip_suffix):
            key = key[: -len(strip_suffix)]
        if key in index:
            raise OdsSamError(f"{folder}: two {role} files match the name {key!r}: {index[key].name}, {path.name}")
        index[key] = path
    if not index:
        raise OdsSamError(f"{folder}: no {role} images ({', '.join(IMAGE_SUFFIXES)})")
    return index


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


def match_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    recursive: bool = False,
    gt_suffix: str = "",
    partial: bool = False,
    missing_gt_empty: bool = False,
) -> tuple[list[MatchedPair], int]:
    """Pair prediction and ground-truth files by name.

    Args:
        pred_dir: Folder of prediction maps.
        gt_dir: Folder of ground-truth masks.
        recursive: Match relative paths (without extension) in sub-folders.
        gt_suffix: Suffix removed from ground-truth stems before matching (MVTec AD's ``_mask``).
        partial: Allow ground truths without a prediction (they are skipped).
        missing_gt_empty: Score predictions without a ground-truth file against an empty
            mask (MVTec AD ships no masks for its defect-free ``good`` images).

    Returns:
        ``(pairs, skipped)``: pairs sorted by key, and the number of unmatched ground truths.

    Raises:
        OdsSamError: On a prediction without ground truth (unless ``missing_gt_empty``), or
            (unless ``partial``) a ground truth without prediction.
    """
    preds = _index_folder(Path(pred_dir), recursive, "", "prediction")
    gts = _index_folder(Path(gt_dir), recursive, gt_suffix, "ground-truth")
    orphans = preds.keys() - gts.keys()
    if orphans and not missing_gt_empty:
        raise OdsSamError(f"{pred_dir}: {len(orphans)} prediction(s) without ground truth in {gt_dir}: "
                          f"{_listing(orphans)} (pass --missing-gt-empty if these images have no anomaly)")
    missing = gts.keys() - preds.keys()
    if missing and not partial:
        raise OdsSamError(
            f"{gt_dir}: {len(missing)} ground truth(s) without prediction in {pred_dir}: {_listing(missing)} "
            "(pass --partial to score only the predictions present)"
        )
    pairs = [MatchedPair(key, preds[key], gts.get(key)) for key in sorted(preds)]
    return pairs, len(missing)


def iter_loaded_pairs(pairs: Iterable[MatchedPair], gt_threshold: int = 127) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read each pair as (float64 probability map, bool mask), checking their sizes."""
    for pair in pairs:
        prob = prediction_from_array(read_map(pair.prediction), pair.prediction)
        if pair.ground_truth is None:
            yield prob, np.zeros(prob.shape, dtype=bool)
            continue
        mask = mask_from_array(read_map(pair.ground_truth), pair.ground_truth, gt_threshold)
        if prob.shape != mask.shape:
            raise OdsSamError(
                f"{pair.prediction}: prediction is {prob.shape[0]}x{prob.shape[1]} but ground truth "
                f"{pair.ground_truth} is {mask.shape[0]}x{mask.shape[1]}"
            )
        yield prob, mask


@dataclass
class FolderScore:
    """Result of :func:`evaluate_folders` with its timing.

    Attributes:
        result: The scores.
        skipped: Ground truths without prediction (``partial`` only).
        seconds_total: Wall time including reading the files.
        seconds_metrics: Wall time spent in the metric computation alone.
    """

    result: MetricResult
    skipped: int
    seconds_total: float
    seconds_metrics: float


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    *,
    name: str,
    metrics=DEFAULT_METRICS,
    recursive: bool = False,
    gt_suffix: str = "",
    partial: bool = False,
    missing_gt_empty: bool = False,
    gt_threshold: int = 127,
    exact_auc: bool = False,
    progress=None,
) -> FolderScore:
    """Match, read and score two folders (see :func:`match_folders` for the arguments).

    Args:
        name: Name of the result.
        metrics: Metric names for :class:`~odssam.metrics.evaluator.Evaluator`.
        gt_threshold: Ground truth is ``> gt_threshold`` on the 8-bit scale.
        exact_auc: Keep every pixel score for AUROC/AUPRO.
        progress: Optional wrapper around the pair iterator (e.g. a progress bar factory
            taking ``(iterable, total)``).
    """
    evaluator = Evaluator(metrics=metrics, name=name, exact_auc=exact_auc)
    pairs, skipped = match_folders(
        pred_dir, gt_dir, recursive=recursive, gt_suffix=gt_suffix, partial=partial, missing_gt_empty=missing_gt_empty
    )
    loaded = iter_loaded_pairs(pairs, gt_threshold)
    if progress is not None:
        loaded = progress(loaded, len(pairs))
    start = time.perf_counter()
    metric_seconds = 0.0
    for prob, mask in loaded:
        tick = time.perf_counter()
        evaluator.update(prob, mask)
        metric_seconds += time.perf_counter() - tick
    total = time.perf_counter() - start
    tick = time.perf_counter()
    result = evaluator.compute()
    metric_seconds += time.perf_counter() - tick
    return FolderScore(result, skipped, total, metric_seconds)
