"""Score a folder of prediction maps against a folder of ground-truth masks.

Files are matched by stem (or by relative path without extension with ``recursive``), so any
method's output can be scored, ours or a baseline's. Predictions are 8-bit (or 16-bit)
probability maps, binary masks or float ``.npy`` maps (``odssam predict``'s output folder
is accepted as it is: its ``probabilities/`` are scored); ground truths are masks in PNG,
JPEG, BMP, TIFF or ``.npy``, binarised at ``> 127`` on the 8-bit scale (JPEG masks such as
Kvasir-SEG's carry compression noise).

Every pair that can be read is scored; every input that cannot is skipped and listed with
its reason (:class:`~odssam.metrics.map_files.SkippedInput`), so one bad file never costs
the scores of the others. The rules:

* unreadable or damaged files, pipes, sockets, devices, broken links, link loops and
  folders named like images: skipped (never opened unless they are regular files);
* two files with the same name (``a.png`` and ``a.npy``): both skipped, the name is ambiguous;
* a prediction whose size differs from its ground truth, or holding NaN/inf or values
  outside [0, 1]: skipped;
* a ground truth with non-zero values but none above the threshold (a 0/1 mask, a label
  map, a colour mask: it would score as all background): skipped, and the message names
  ``--gt-threshold``;
* a prediction without ground truth (unless ``missing_gt_empty``) and a ground truth
  without prediction (unless ``partial``): skipped.

With ``strict`` the first problem raises :class:`~odssam.errors.OdsSamError` instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from odssam.errors import OdsSamError
from odssam.metrics.evaluator import DEFAULT_METRICS, Evaluator
from odssam.metrics.inputs import as_probability
from odssam.metrics.map_files import (
    IMAGE_SUFFIXES,
    MAP_SUFFIXES,
    InputError,
    SkipList,
    SkippedInput,
    is_map_name,
    read_map,
    scan_folder,
)
from odssam.metrics.result import MetricResult

__all__ = [
    "IMAGE_SUFFIXES",
    "MAP_SUFFIXES",
    "FolderScore",
    "MatchedPair",
    "evaluate_folders",
    "load_pair",
    "mask_from_array",
    "match_folders",
    "prediction_from_array",
    "read_map",
    "resolve_prediction_folder",
]

_MAX_LISTED = 5
# A JPEG of an empty mask may decode with faint ringing; below this 8-bit level it is noise.
_JPEG_NOISE_LEVEL = 16
_JPEG_SUFFIXES = (".jpg", ".jpeg")
# What ``odssam predict`` writes under its output folder (see odssam.inference.io).
_PREDICT_CSV = "predictions.csv"
_PREDICT_PROBABILITIES = "probabilities"
_PREDICT_MASKS = "masks"
_PREDICT_OVERLAYS = "overlays"


def prediction_from_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Prediction map -> float64 probabilities in [0, 1] (k/255 for 8-bit files), see :func:`as_probability`.

    Raises:
        InputError: Naming ``path``, for a map :func:`as_probability` rejects (NaN/inf,
            values outside [0, 1], unsupported type).
    """
    try:
        return as_probability(array)
    except ValueError as error:
        raise InputError(path, str(error)) from error


def mask_from_array(array: np.ndarray, path: Path, threshold: int = 127) -> np.ndarray:
    """Ground-truth map -> bool mask: ``> threshold`` on the 8-bit scale.

    A mask with non-zero values but none above the threshold would silently score as all
    background (a 0/1 mask, a 0..5 label map, a pure-red colour mask read as luminance 76):
    it is refused. JPEG masks whose values stay at or below 16 are taken as an empty mask
    with compression noise.

    Raises:
        InputError: Naming ``path``: unsupported type, NaN/inf, or not binary at ``threshold``.
    """
    if array.dtype == np.bool_:
        return array
    if array.dtype == np.uint8:
        scale = 1.0
    elif array.dtype == np.uint16:
        scale = 257.0
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(path, "ground truth holds NaN or infinite values")
        scale = 1.0 / 255.0
    else:
        raise InputError(path, f"unsupported ground-truth type {array.dtype}")
    mask = array > threshold * scale
    if not mask.any():
        top = float(array.max()) / scale  # on the 8-bit scale
        jpeg_noise = path.suffix.lower() in _JPEG_SUFFIXES and top <= _JPEG_NOISE_LEVEL
        if top > 0 and not jpeg_noise:
            raise InputError(
                path,
                f"not a binary mask at threshold {threshold}: its values reach {top:.4g} (8-bit scale), none above "
                f"{threshold}, so it would score as all background (a 0/1, label or colour mask?); set where "
                "foreground starts with --gt-threshold",
            )
    return mask


@dataclass(frozen=True)
class MatchedPair:
    """A prediction file and its ground truth (``None``: an all-normal image, empty mask)."""

    key: str
    prediction: Path
    ground_truth: Path | None


def resolve_prediction_folder(pred_dir: str | Path) -> tuple[Path, str | None]:
    """The folder of prediction maps to read, and a note when it is not ``pred_dir`` itself.

    ``odssam predict``'s output folder (``predictions.csv``, ``probabilities/``, ``masks/``,
    ``overlays/``) is recognised: its ``probabilities/`` are scored, or its binary
    ``masks/`` when it wrote no probability maps (``--probability-format none``). A folder
    with map files of its own is always read as it is.
    """
    pred_dir = Path(pred_dir)
    probabilities, masks = pred_dir / _PREDICT_PROBABILITIES, pred_dir / _PREDICT_MASKS
    has_csv = (pred_dir / _PREDICT_CSV).is_file()
    try:
        has_own_maps = any(is_map_name(name) for name in os.listdir(pred_dir))
    except OSError:
        return pred_dir, None  # scan_folder reports the folder itself
    if has_own_maps:
        return pred_dir, None
    # A sibling output (or the CSV) tells predict's folder from one category named "probabilities".
    if probabilities.is_dir() and (has_csv or masks.is_dir() or (pred_dir / _PREDICT_OVERLAYS).is_dir()):
        return probabilities, f"{pred_dir} is an 'odssam predict' output folder: scoring its probability maps"
    if has_csv and masks.is_dir():
        return masks, (f"{pred_dir} is an 'odssam predict' output folder without probability maps: scoring its "
                       "binary masks (threshold-sweep metrics see only two levels)")
    return pred_dir, None


def _match_key(path: Path, folder: Path, recursive: bool, strip_suffix: str) -> str:
    key = path.relative_to(folder).with_suffix("").as_posix() if recursive else path.stem
    if strip_suffix and key.endswith(strip_suffix):
        key = key[: -len(strip_suffix)]
    return key


def _index_folder(
    folder: Path, recursive: bool, strip_suffix: str, role: str, skips: SkipList
) -> tuple[dict[str, Path], set[str]]:
    """``(usable, refused)``: files by matching key, and the keys of skipped entries.

    A key is refused when several files share it, or when its only entries were skipped (a
    pipe, a broken link...); the other folder's file of that key is then not listed again.
    """
    before = len(skips)
    by_key: dict[str, list[Path]] = {}
    for path in scan_folder(folder, recursive=recursive, skips=skips, role=role):
        by_key.setdefault(_match_key(path, folder, recursive, strip_suffix), []).append(path)
    # A skipped entry next to a readable file of the same name (a.png a pipe, a.npy fine) does
    # not make the name ambiguous: the readable file is used.
    refused = {_match_key(item.path, folder, recursive, strip_suffix) for item in skips.items[before:]} - by_key.keys()
    if not by_key and not refused:
        raise OdsSamError(f"{folder}: no {role} images ({', '.join(MAP_SUFFIXES)})")
    usable: dict[str, Path] = {}
    for key, paths in by_key.items():
        if len(paths) == 1:
            usable[key] = paths[0]
            continue
        refused.add(key)
        names = ", ".join(path.name for path in paths)
        for path in paths:
            skips.add(path, f"{len(paths)} {role} files match the name {key!r} ({names}): none of them is scored")
    return usable, refused


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
    skips: SkipList | None = None,
) -> tuple[list[MatchedPair], int]:
    """Pair prediction and ground-truth files by name.

    Args:
        pred_dir: Folder of prediction maps (read as it is: see :func:`resolve_prediction_folder`).
        gt_dir: Folder of ground-truth masks.
        recursive: Match relative paths (without extension) in sub-folders.
        gt_suffix: Suffix removed from ground-truth stems before matching (MVTec AD's ``_mask``).
        partial: Allow ground truths without a prediction (they are counted, not listed).
        missing_gt_empty: Score predictions without a ground-truth file against an empty
            mask (MVTec AD ships no masks for its defect-free ``good`` images).
        skips: Receives the files that cannot be paired. ``None``: a strict list, so the
            first problem raises.

    Returns:
        ``(pairs, skipped)``: pairs sorted by key, and the number of unmatched ground truths
        ``partial`` allowed.

    Raises:
        OdsSamError: If a folder is missing or holds no map files at all; when ``skips`` is
            strict, also on the first file that cannot be paired.
    """
    skips = SkipList(strict=True) if skips is None else skips
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    preds, pred_refused = _index_folder(pred_dir, recursive, "", "prediction", skips)
    gts, gt_refused = _index_folder(gt_dir, recursive, gt_suffix, "ground-truth", skips)
    orphans = sorted(preds.keys() - gts.keys() - gt_refused)
    if orphans and not missing_gt_empty:
        if skips.strict:
            raise OdsSamError(f"{pred_dir}: {len(orphans)} prediction(s) without ground truth in {gt_dir}: "
                              f"{_listing(orphans)} (pass --missing-gt-empty if these images have no anomaly)")
        for key in orphans:
            skips.add(preds.pop(key), f"no ground truth named {key!r} in {gt_dir} (pass --missing-gt-empty if "
                      "this image has no anomaly)")
    missing = sorted(gts.keys() - preds.keys() - pred_refused)
    if missing and not partial:
        hint = "pass --partial to score only the predictions present"
        if skips.strict:
            raise OdsSamError(f"{gt_dir}: {len(missing)} ground truth(s) without prediction in {pred_dir}: "
                              f"{_listing(missing)} ({hint})")
        for key in missing:
            skips.add(gts[key], f"no prediction named {key!r} in {pred_dir} ({hint})")
    pairs = [MatchedPair(key, path, gts.get(key)) for key, path in sorted(preds.items()) if key not in gt_refused]
    return pairs, len(missing) if partial else 0


def load_pair(pair: MatchedPair, gt_threshold: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair as ``(HxW float64 probabilities, HxW bool mask)``, checking their sizes.

    Raises:
        InputError: Naming the file that cannot be scored and why.
    """
    prob = prediction_from_array(read_map(pair.prediction), pair.prediction)
    if pair.ground_truth is None:
        return prob, np.zeros(prob.shape, dtype=bool)
    mask = mask_from_array(read_map(pair.ground_truth), pair.ground_truth, gt_threshold)
    if prob.shape != mask.shape:
        raise InputError(
            pair.prediction,
            f"prediction is {prob.shape[0]}x{prob.shape[1]} but ground truth {pair.ground_truth} is "
            f"{mask.shape[0]}x{mask.shape[1]}",
        )
    return prob, mask


def _loaded(
    pairs: Iterable[MatchedPair], gt_threshold: int, skips: SkipList
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read pairs for the evaluator; those that cannot be read go to ``skips``."""
    for pair in pairs:
        try:
            loaded = load_pair(pair, gt_threshold)
        except InputError as error:
            skips.add_error(error)
            continue
        yield loaded


@dataclass
class FolderScore:
    """Result of :func:`evaluate_folders` with its timing.

    Attributes:
        result: The scores (of the pairs that could be read).
        skipped: Ground truths without prediction that ``partial`` allowed.
        seconds_total: Wall time including reading the files.
        seconds_metrics: Wall time spent in the metric computation alone.
        problems: Inputs left out, each with its reason, sorted by path (empty when everything
            was scored).
        prediction_dir: The folder the predictions were read from.
        note: Why that is not the folder given (an ``odssam predict`` output folder), if so.
    """

    result: MetricResult
    skipped: int
    seconds_total: float
    seconds_metrics: float
    problems: list[SkippedInput] = field(default_factory=list)
    prediction_dir: Path | None = None
    note: str | None = None


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
    strict: bool = False,
    progress=None,
) -> FolderScore:
    """Match, read and score two folders (see :func:`match_folders` for the arguments).

    Args:
        name: Name of the result.
        metrics: Metric names for :class:`~odssam.metrics.evaluator.Evaluator`.
        gt_threshold: Ground truth is ``> gt_threshold`` on the 8-bit scale.
        exact_auc: Keep every pixel score for AUROC/AUPRO.
        strict: Raise on the first input that cannot be scored instead of listing it in
            :attr:`FolderScore.problems`.
        progress: Optional wrapper around the pair iterator (e.g. a progress bar factory
            taking ``(iterable, total)``).

    Raises:
        OdsSamError: If a folder is missing or empty, or (``strict``) on the first problem.
            When no pair at all could be read the result has ``n_images == 0``.
    """
    evaluator = Evaluator(metrics=metrics, name=name, exact_auc=exact_auc)
    skips = SkipList(strict=strict)
    pred_dir, note = resolve_prediction_folder(pred_dir)
    pairs, skipped = match_folders(
        pred_dir, gt_dir, recursive=recursive, gt_suffix=gt_suffix, partial=partial,
        missing_gt_empty=missing_gt_empty, skips=skips,
    )
    loaded = _loaded(pairs, gt_threshold, skips)
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
    problems = sorted(skips, key=lambda item: str(item.path))
    return FolderScore(result, skipped, total, metric_seconds, problems, pred_dir, note)
