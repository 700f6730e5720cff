"""What ``odssam compare`` reads from a finished run folder of ``odssam train``.

A finished run folder holds ``config.yaml``, ``splits/split.json`` (and
``splits/test-<set>.json`` per ``data.test_sets`` entry), ``metrics.jsonl``, the final
model (``best.pt`` when validation selected one, else ``last.pt``) and ``report.json``, the
final evaluation with one result per test set. From these :func:`read_run_folder` takes:

* the scores per test set (the result's name: test set, category or dataset);
* the identity of each test set: dataset, category, root, resize, a fingerprint of its
  sample names and the samples the final evaluation skipped as unreadable
  (``report-skipped.json``), so that runs scored on different test images are never put in
  one column;
* the training time: the sum of the epochs' wall times (``epoch_seconds``) times the
  processes, and the device they ran on (recorded since ``odssam compare`` exists; older
  runs have the time but no device).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odssam.errors import OdsSamError
from odssam.metrics.report import read_results
from odssam.reproduce.configs import read_config_dict
from odssam.reproduce.runner import REPORT_FILE


@dataclass(frozen=True)
class DataIdentity:
    """The test images behind one column.

    Attributes:
        dataset: ``data.dataset`` (with ``/category`` or ``/test set`` where there is one).
        root: The dataset folder, as the run recorded it.
        image_size: ``data.image_size`` the images were resized to (``None``: not resized).
        fingerprint: SHA-256 (first 12 hex digits) of the sorted test sample names.
        count: Number of test images.
        skipped: Samples the run's final evaluation could not read (the run's, over all its test sets).
    """

    dataset: str
    root: str
    image_size: int | None
    fingerprint: str
    count: int
    skipped: tuple[str, ...] = ()

    def difference(self, other: DataIdentity) -> str | None:
        """What differs from ``other`` in a few words, or ``None`` for the same test images."""
        for name in ("dataset", "root", "image_size", "fingerprint", "skipped"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "skipped":
                    return f"skipped as unreadable: {', '.join(mine) or 'none'} vs {', '.join(theirs) or 'none'}"
                what = "test samples" if name == "fingerprint" else name
                return f"{what} {mine} vs {theirs}"
        return None


@dataclass(frozen=True)
class TrainingTime:
    """Device time of a run's epochs: ``hours`` (wall time x processes) on ``device`` (``None``: not recorded)."""

    hours: float
    device: str | None


@dataclass(frozen=True)
class FinishedRun:
    """A finished training run.

    Attributes:
        path: The run folder.
        config: Its ``config.yaml`` as a nested dict.
        results: Test set name -> metric key -> score (fractions, as in ``report.json``).
        test_sets: Test set name -> the identity of its images.
        checkpoint: The final model (``best.pt`` if present, else ``last.pt``).
        training: Training time, or ``None`` when ``metrics.jsonl`` records none.
        epochs: Epochs recorded in ``metrics.jsonl``.
    """

    path: Path
    config: dict[str, Any]
    results: dict[str, dict[str, float]]
    test_sets: dict[str, DataIdentity]
    checkpoint: Path
    training: TrainingTime | None
    epochs: int

    @property
    def model(self) -> dict[str, Any]:
        return self.config.get("model") or {}

    @property
    def data(self) -> dict[str, Any]:
        return self.config.get("data") or {}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise OdsSamError(f"{path}: unreadable ({error})") from error


def results_by_test_set(path: Path) -> dict[str, dict[str, float]]:
    """Test set name -> metric values of a final report (``report.json``)."""
    results = read_results(path)
    if isinstance(results, dict):  # a multi-method report: take every group
        results = [result for group in results.values() for result in group]
    return {result.name: dict(result.values) for result in results}


def _identity(
    record: dict[str, Any], samples: list[str], label: str, path: Path, skipped: tuple[str, ...]
) -> DataIdentity:
    if not isinstance(samples, list):
        raise OdsSamError(f"{path}: no list of test samples")
    digest = hashlib.sha256(json.dumps(sorted(map(str, samples))).encode()).hexdigest()[:12]
    protocol = record.get("protocol") or {}
    return DataIdentity(label, str(record.get("root")), protocol.get("image_size"), digest, len(samples), skipped)


def skipped_samples(run_dir: Path) -> tuple[str, ...]:
    """Sorted names of the samples the final evaluation skipped (``report-skipped.json``; none if absent)."""
    path = run_dir / "report-skipped.json"
    if not path.is_file():
        return ()
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise OdsSamError(f"{path}: not a list of skipped samples")
    return tuple(sorted(str(entry.get("name")) for entry in entries if isinstance(entry, dict)))


def test_set_identities(run_dir: Path, data: dict[str, Any], names: list[str]) -> dict[str, DataIdentity]:
    """The identity of each test set ``names`` of a run, from its split records."""
    skipped = skipped_samples(run_dir)
    identities = {}
    for name in names:
        # A run with data.test_sets records each test set apart; otherwise split.json lists the test split.
        path = run_dir / "splits" / (f"test-{name}.json" if data.get("test_sets") else "split.json")
        record = _read_json(path)
        if not isinstance(record, dict):
            raise OdsSamError(f"{path}: not a split record")
        samples = (record.get("splits") or {}).get("test")
        dataset = str(record.get("dataset", data.get("dataset")))
        category = record.get("category")
        label = f"{dataset}/{category}" if category else dataset
        identities[name] = _identity(record, samples, label, path, skipped)
    return identities


def training_time(metrics_path: Path) -> tuple[TrainingTime | None, int]:
    """Summed epoch wall time (times processes) and its device from ``metrics.jsonl``; epochs counted."""
    if not metrics_path.is_file():
        return None, 0
    try:
        records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise OdsSamError(f"{metrics_path}: unreadable ({error})") from error
    timed = [r for r in records if isinstance(r.get("epoch_seconds"), (int, float))]
    if not timed:
        return None, len(records)
    seconds = sum(r["epoch_seconds"] * int(r.get("world_size") or 1) for r in timed)
    devices = list(dict.fromkeys(str(r["device"]) for r in timed if r.get("device")))
    return TrainingTime(seconds / 3600, ", ".join(devices) or None), len(records)


def read_run_folder(path: str | Path) -> FinishedRun:
    """Read a finished run folder.

    Raises:
        OdsSamError: Not a folder, or no config, final report, split record or checkpoint.
    """
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise OdsSamError(f"{run_dir}: not a run folder")
    for needed in ("config.yaml", REPORT_FILE):
        if not (run_dir / needed).is_file():
            raise OdsSamError(f"{run_dir}: not a finished run folder (no {needed}; train it to the end first)")
    checkpoint = next((run_dir / name for name in ("best.pt", "last.pt") if (run_dir / name).is_file()), None)
    if checkpoint is None:
        raise OdsSamError(f"{run_dir}: no checkpoint (best.pt or last.pt)")
    config = read_config_dict(run_dir, "config.yaml")
    results = results_by_test_set(run_dir / REPORT_FILE)
    if not results:
        raise OdsSamError(f"{run_dir / REPORT_FILE}: no test results")
    identities = test_set_identities(run_dir, config.get("data") or {}, list(results))
    training, epochs = training_time(run_dir / "metrics.jsonl")
    return FinishedRun(run_dir, config, results, identities, checkpoint, training, epochs)
