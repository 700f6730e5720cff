"""Plan and run the experiments of one paper table through the normal training API.

Every experiment is one :func:`odssam.engine.trainer.train` call writing the usual run
folder, ``<output>/<table>/<run>/``. A run folder is

* finished when it holds the trainer's final report (``report.json``): it is skipped;
* interrupted when it holds ``last.pt`` but no report: it is resumed (``resume=True``);
* new otherwise.

Wall time is measured around each ``train`` call and appended to the run folder's
``wall_time.json`` (one session per call, interrupted and failed ones included), so a
table's hours count every session, also of runs skipped or resumed later.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odssam.config import ExperimentConfig, apply_overrides, from_dict, with_overrides
from odssam.engine.logging import write_json_atomic
from odssam.errors import OdsSamError
from odssam.reproduce.configs import read_config_dict
from odssam.reproduce.datasets import DataStatus, probe_data
from odssam.reproduce.tables import Experiment, TableSpec

REPORT_FILE = "report.json"
LAST_CHECKPOINT = "last.pt"
TIME_FILE = "wall_time.json"
TIME_FORMAT = "odssam-wall-time/1"


@dataclass
class PlannedRun:
    """One experiment of a table, resolved against the data root and the output folder.

    Attributes:
        experiment: What the table needs from it.
        config_path: The paper config it starts from.
        config: The resolved experiment config (data root, overrides applied).
        run_dir: Its run folder.
        data: Where its dataset was found and the split sizes.
    """

    experiment: Experiment
    config_path: Path
    config: ExperimentConfig
    run_dir: Path
    data: DataStatus

    @property
    def state(self) -> str:
        """``missing data``, ``finished``, ``interrupted`` or ``new``."""
        if self.data.missing:
            return "missing data"
        if (self.run_dir / REPORT_FILE).is_file():
            return "finished"
        if (self.run_dir / LAST_CHECKPOINT).is_file():
            return "interrupted"
        return "new"


@dataclass
class RunOutcome:
    """What happened to a planned run: ``trained``, ``resumed``, ``finished earlier``,
    ``skipped: missing data`` or ``failed`` (with ``error``)."""

    run: PlannedRun
    action: str
    error: str | None = None


def experiment_config(
    folder: Path,
    experiment: Experiment,
    overrides: list[str],
    sam_checkpoint: str | None,
    run_dir: Path,
) -> ExperimentConfig:
    """The config of ``experiment``: paper config, its data section, ``--set``, SAM weights.

    ``data.root`` is left empty (filled in once the dataset is found); ``data.category``,
    ``train.output_dir`` and ``train.run_name`` name the table's cell and run folder.
    """
    data = read_config_dict(folder, experiment.config)
    if experiment.data_config:
        data["data"] = read_config_dict(folder, experiment.data_config).get("data", {})
    apply_overrides(data, overrides)
    if sam_checkpoint:
        data.setdefault("model", {}).setdefault("sam", {})["checkpoint"] = str(sam_checkpoint)
    data.setdefault("data", {})
    data["data"]["root"] = ""
    if experiment.category:
        data["data"]["category"] = experiment.category
    data.setdefault("train", {})
    data["train"]["output_dir"] = str(run_dir.parent)
    data["train"]["run_name"] = run_dir.name
    try:
        return from_dict(ExperimentConfig, data)
    except OdsSamError as error:
        raise OdsSamError(f"{folder / experiment.config}: {error}") from error


def plan_table(
    spec: TableSpec,
    data_root: str | Path,
    output: str | Path,
    config_folder: Path,
    overrides: list[str] | None = None,
    sam_checkpoint: str | None = None,
) -> list[PlannedRun]:
    """Resolve every experiment of ``spec``: config, dataset folder, split sizes, run folder."""
    runs = []
    for experiment in spec.experiments:
        run_dir = Path(output) / spec.name / experiment.run
        cfg = experiment_config(config_folder, experiment, list(overrides or []), sam_checkpoint, run_dir)
        status = probe_data(cfg.data, data_root)
        if status.root is not None:
            cfg = with_overrides(cfg, {"data.root": str(status.root)})
        runs.append(PlannedRun(experiment, config_folder / experiment.config, cfg, run_dir, status))
    return runs


# --------------------------------------------------------------------------- wall time


def device_label(device: str) -> str:
    """``GPU (<name>)`` for a CUDA device, else ``CPU``: what the hours of a run were spent on."""
    import torch

    from odssam.utils.device import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(resolved)})"
    return resolved.type.upper()


def read_sessions(run_dir: Path) -> list[dict[str, Any]]:
    """The sessions recorded in ``run_dir/wall_time.json`` (none if absent or unreadable)."""
    path = Path(run_dir) / TIME_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    sessions = data.get("sessions") if isinstance(data, dict) else None
    return [s for s in sessions or [] if isinstance(s, dict) and isinstance(s.get("seconds"), (int, float))]


def record_session(run_dir: Path, seconds: float, device: str, outcome: str, started: str) -> None:
    """Append one training session to ``run_dir/wall_time.json``."""
    sessions = read_sessions(run_dir)
    sessions.append({"started": started, "seconds": seconds, "device": device, "outcome": outcome})
    write_json_atomic(Path(run_dir) / TIME_FILE, {"format": TIME_FORMAT, "sessions": sessions})


def hours_by_device(run_dir: Path) -> dict[str, float]:
    """Hours spent on ``run_dir`` per device label, over all its sessions."""
    hours: dict[str, float] = {}
    for session in read_sessions(run_dir):
        device = str(session.get("device", "unknown"))
        hours[device] = hours.get(device, 0.0) + float(session["seconds"]) / 3600
    return hours


# --------------------------------------------------------------------------- running


def run_planned(
    runs: list[PlannedRun],
    device: str = "auto",
    progress: bool = True,
    say: Callable[[str], Any] = print,
) -> list[RunOutcome]:
    """Train every runnable, unfinished run in order; failures are reported, not raised.

    ``KeyboardInterrupt`` stops everything (after recording the session's time), so that
    the next invocation resumes the interrupted run.
    """
    from odssam.engine.trainer import train

    outcomes = []
    label = None
    for run in runs:
        state = run.state
        if state == "missing data":
            say(f"[{run.experiment.run}] skipped: {run.data.label} {run.data.missing}")
            outcomes.append(RunOutcome(run, "skipped: missing data"))
            continue
        if state == "finished":
            say(f"[{run.experiment.run}] finished earlier: {run.run_dir / REPORT_FILE}")
            outcomes.append(RunOutcome(run, "finished earlier"))
            continue
        resume = state == "interrupted"
        label = label or device_label(device)
        say(f"[{run.experiment.run}] {'resuming' if resume else 'training'} in {run.run_dir} on {label}")
        run.run_dir.mkdir(parents=True, exist_ok=True)
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        start = time.perf_counter()
        outcome = "crashed"
        try:
            train(run.config, run_dir=run.run_dir, resume=resume, device=device, progress=progress)
            outcome = "resumed" if resume else "trained"
            outcomes.append(RunOutcome(run, outcome))
        except OdsSamError as error:
            outcome = "failed"
            say(f"[{run.experiment.run}] failed: {error}")
            outcomes.append(RunOutcome(run, "failed", str(error)))
        except BaseException as error:  # recorded, then passed on (Ctrl-C stops the table)
            outcome = "interrupted" if isinstance(error, KeyboardInterrupt) else "crashed"
            raise
        finally:
            record_session(run.run_dir, time.perf_counter() - start, label, outcome, started)
        if outcome in ("trained", "resumed") and not (run.run_dir / REPORT_FILE).is_file():
            outcomes[-1] = RunOutcome(run, "failed", f"training ended without {REPORT_FILE} (train.final_eval off?)")
    return outcomes
