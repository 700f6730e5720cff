"""``odssam compare`` from top to bottom: read the run folders, measure, write table and figures.

1. Read each finished run folder and label it (:mod:`~odssam.reproduce.methods`).
2. Group runs into methods and refuse test sets scored on different test images.
3. Per method: parameters and FLOPs; prediction speed on its first run's test images.
4. Per test set: the same seeded test images predicted by every method, as one figure.
5. Write ``compare.md`` / ``compare.csv`` (:mod:`~odssam.reproduce.compare`) and the figures.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odssam.errors import OdsSamError
from odssam.reproduce import measure
from odssam.reproduce.compare import Method, MethodFacts, check_same_test_data, group_methods, write_compare_report
from odssam.reproduce.methods import method_labels
from odssam.reproduce.run_folders import FinishedRun, read_run_folder
from odssam.reproduce.runner import device_label
from odssam.utils.atomic import check_writable_folder


@dataclass(frozen=True)
class CompareOptions:
    """How much ``odssam compare`` measures.

    Attributes:
        images: Test images per figure (0: no figure).
        seed: Seed of the choice of those images.
        speed: Measure prediction speed.
        speed_images: Images timed per method (after one warm-up batch).
        batch_size: Images per forward pass (speed and figures).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        sam_checkpoint: SAM weights to use instead of the path in the runs' configs.
    """

    images: int = 4
    seed: int = 0
    speed: bool = True
    speed_images: int = 32
    batch_size: int = 8
    device: str = "auto"
    sam_checkpoint: str | None = None

    def __post_init__(self) -> None:
        for name in ("images", "speed_images", "batch_size"):
            minimum = 0 if name == "images" else 1
            if getattr(self, name) < minimum:
                raise OdsSamError(f"--{name.replace('_', '-')} must be at least {minimum}, got {getattr(self, name)}")


@dataclass
class CompareOutcome:
    """What :func:`compare_runs` wrote: ``md``, ``csv`` and one figure per test set."""

    paths: dict[str, Path]
    figures: dict[str, Path]
    notes: list[str]


def _figure_path(out_dir: Path, test_set: str) -> Path:
    return out_dir / f"figure-{re.sub(r'[^A-Za-z0-9._-]+', '_', test_set)}.png"


def _read_runs(run_dirs: Sequence[str | Path]) -> list[FinishedRun]:
    if not run_dirs:
        raise OdsSamError("give at least one run folder to compare")
    runs = [read_run_folder(path) for path in run_dirs]
    seen: dict[Path, Path] = {}
    for run in runs:
        resolved = run.path.resolve()
        if resolved in seen:
            raise OdsSamError(f"run folder {run.path} is given twice")
        seen[resolved] = run.path
    return runs


def _profile(method: Method, facts: MethodFacts) -> None:
    try:
        facts.params, facts.flops, facts.frozen_segmenter = measure.learnable_size(method.runs[0].model)
    except Exception as error:  # a model the profiler cannot trace: the table says why, the rest goes on
        facts.why["profile"] = "n/a"
        facts.notes.append(f"{method.label}: not profiled ({type(error).__name__}: {error})")


def _predict_with(
    run: FinishedRun,
    label: str,
    known: MethodFacts,
    options: CompareOptions,
    timing: bool,
    figure_samples: dict[str, list],
    maps: dict[str, dict[str, list]],
) -> None:
    """Load the run's final model, time it (``timing``) on its first usable test set, predict the figures' images."""
    try:
        predictor = measure.load_predictor(run, options.device, options.batch_size, options.sam_checkpoint)
    except OdsSamError as error:  # e.g. SAM weights elsewhere on this machine: the table still comes
        known.notes.append(f"{label}: {run.checkpoint} not loaded, no speed or figure ({error})")
        known.why.setdefault("speed", "n/a")
        return
    for test_set in run.results:
        try:
            dataset = measure.test_dataset(run, test_set)
            if timing:
                images = measure.first_images(dataset, options.speed_images)
                known.images_per_second = measure.images_per_second(
                    predictor, images, options.speed_images, options.batch_size
                )
                timing = False
            if options.images and len(dataset):
                # The first run scored on a test set picks its images; every other method draws the same.
                chosen = figure_samples.get(test_set) or measure.choose_samples(dataset, options.images, options.seed)
                figure_samples[test_set] = chosen
                maps.setdefault(test_set, {})[label] = measure.probability_maps(predictor, chosen, options.batch_size)
        except OdsSamError as error:
            known.notes.append(f"{label}: test images of '{test_set}' not usable here ({error})")
            known.why.setdefault("speed", "n/a")


def _measure(
    methods: list[Method], options: CompareOptions, out_dir: Path, say: Callable[[str], Any]
) -> tuple[dict[str, MethodFacts], dict[str, Path]]:
    """Profile, time and draw every method; returns the facts per method and the figures written."""
    facts = {method.label: MethodFacts() for method in methods}
    figure_samples: dict[str, list] = {}  # test set -> the figure's decoded samples
    maps: dict[str, dict[str, list]] = {}  # test set -> method -> probability maps
    for method in methods:
        known = facts[method.label]
        _profile(method, known)
        for index, run in enumerate(method.runs):
            timing = options.speed and index == 0  # a method is timed on its first run
            if timing or options.images:
                say(f"[{method.label}] {run.path}: predicting on {options.device}")
                _predict_with(run, method.label, known, options, timing, figure_samples, maps)
    figures = {
        test_set: measure.save_method_figure(_figure_path(out_dir, test_set), figure_samples[test_set], by_method)
        for test_set, by_method in maps.items()
    }
    return facts, figures


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    labels: dict[str, str] | None = None,
    options: CompareOptions | None = None,
    say: Callable[[str], Any] = print,
) -> CompareOutcome:
    """Compare finished run folders: ``compare.md``, ``compare.csv`` and ``figure-<test set>.png``.

    Args:
        run_dirs: Run folders of ``odssam train``.
        out_dir: Where to write.
        labels: Run folder (as given, or its name) -> method label, replacing the automatic one.
        options: What to measure (default :class:`CompareOptions`).
        say: Progress lines.

    Raises:
        OdsSamError: An unfinished run folder, runs tested on different data, a bad label, or
            an output folder that cannot be written.
    """
    options = options or CompareOptions()
    out_dir = Path(out_dir)
    runs = _read_runs(run_dirs)
    methods = group_methods(runs, method_labels(runs, labels))
    identities = check_same_test_data(methods)
    check_writable_folder(out_dir)  # before the models are timed, not after
    facts, figures = _measure(methods, options, out_dir, say)
    speed_column = None
    if options.speed:
        speed_column = f"Predict img/s ({device_label(options.device)})"
    notes = [note for known in facts.values() for note in known.notes]
    if options.speed:
        notes.append(
            f"Predict img/s: each method's final model on its first run's test images, {options.speed_images} "
            f"images in batches of {options.batch_size} after one warm-up batch, decoding not timed"
        )
    paths = write_compare_report(methods, identities, facts, out_dir, speed_column, notes)
    return CompareOutcome(paths, figures, notes)
