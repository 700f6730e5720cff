"""The paper's whole training schedule, timed: where the wall time of a real ``odssam train`` goes.

Runs ``odssam train`` in this process (the real command, its config and overrides) and splits
its wall time into start-up (imports, config, data checks, model), the embedding cache, the
training parts (loader, optimizer, cached items moved to the GPU),
training steps, validation, checkpoint writes on the training thread, the final model's
evaluation, and the rest (logging, plots). Each phase is timed by wrapping the function the
trainer calls for it (``odssam.engine.trainer``'s module attributes), so nothing in the run
changes.

A run shorter than the config's schedule (``--epochs N``, e.g. to fit a time limit) is
extrapolated to ``--schedule`` epochs, and the output says so: the first epoch (CUDA-graph
capture, autotuning) is counted once, every later epoch as the mean of the measured ones.

    python benchmarks/bench_schedule.py --config configs/kvasir.yaml --epochs 40 --json out.json \\
        -- --set data.root=Kvasir-SEG --set model.sam.checkpoint=null
    python benchmarks/bench_schedule.py            # CPU: tiny config on generated data, 3 epochs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PROCESS_START = time.perf_counter()

import torch  # noqa: E402  (imports are part of the start-up being timed)

from odssam.cli.main import main as odssam_main  # noqa: E402
from odssam.engine import trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Trainer attribute -> phase. Every call of the function is timed from entry to return.
PHASES = {
    "prepare_embedding_cache": "cache",
    "build_training_parts": "training parts",  # loader, optimizer; cached items onto the GPU
    "train_one_epoch": "training steps",
    "validate": "validation",
    "save_epoch_checkpoints": "checkpoint writes",
    "load_final_model": "final evaluation",
    "evaluate_final_model": "final evaluation",
}
ORDER = ("start-up", "cache", "training parts", "training steps", "validation", "checkpoint writes", "final evaluation", "other")


class PhaseClock:
    """Wraps the trainer's phase functions and adds up the seconds spent in each."""

    def __init__(self, device_sync):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.first_phase_at: float | None = None
        self._sync = device_sync

    def wrap(self, name: str, phase: str):
        function = getattr(trainer, name)

        def timed(*args, **kwargs):
            self._sync()
            begin = time.perf_counter()
            if self.first_phase_at is None:
                self.first_phase_at = begin
            try:
                return function(*args, **kwargs)
            finally:
                self._sync()
                elapsed = time.perf_counter() - begin
                self.seconds[phase] += elapsed
                self.calls[name].append(elapsed)

        setattr(trainer, name, timed)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def split(clock: PhaseClock, total: float, startup: float) -> dict[str, float]:
    phases = {"start-up": startup, **{phase: clock.seconds.get(phase, 0.0) for phase in ORDER[1:-1]}}
    phases["other"] = max(0.0, total - sum(phases.values()))
    return phases


def extrapolate(phases: dict[str, float], clock: PhaseClock, measured: int, schedule: int) -> dict[str, float]:
    """Per-epoch phases scaled from ``measured`` epochs to ``schedule``.

    The first epoch (capture, autotuning) is counted once; so are the last epoch's validation
    and checkpoint write, which every run makes once at its end (``last.pt`` written on the
    training thread), however long.
    """
    per_epoch = {
        "training steps": (clock.calls["train_one_epoch"], False),
        "validation": (clock.calls["validate"], True),
        "checkpoint writes": (clock.calls["save_epoch_checkpoints"], True),
    }
    scaled = dict(phases)
    for phase, (calls, last_once) in per_epoch.items():
        if not calls:
            continue
        once = [calls[0]] + ([calls[-1]] if last_once and len(calls) > 2 else [])
        repeated = calls[1:len(calls) - (len(once) - 1)]
        if not repeated or measured <= len(once):  # too few epochs to tell a typical one
            scaled[phase] = sum(calls) * schedule / measured
            continue
        per_epoch_calls = len(repeated) / (measured - len(once))  # validation may skip epochs
        scaled[phase] = sum(once) + statistics.fmean(repeated) * per_epoch_calls * (schedule - len(once))
    scaled["other"] = phases["other"] * schedule / measured
    return scaled


def tiny_arguments(folder: Path) -> list[str]:
    """The tiny config on a generated ``images/`` + ``masks/`` folder of 12 images (3 for the test)."""
    import numpy as np
    from PIL import Image

    from odssam.demo.synthetic import render_surface

    rng = np.random.default_rng(0)
    root = folder / "data"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for index in range(12):
        image, mask, _ = render_surface(rng, 96, 96)
        Image.fromarray(image).save(root / "images" / f"{index:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{index:03d}.png")
    config = str(ROOT / "configs" / "tiny.yaml")
    return ["--config", config, "--set", f"data.root={root}", "--set", "data.test_fraction=0.25"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="experiment YAML (default: tiny on generated data)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs to run (default: the config's)")
    parser.add_argument("--schedule", type=int, default=None, help="epochs to extrapolate to (default: the config's)")
    parser.add_argument("--run-dir", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("train_args", nargs="*", help="after --: further `odssam train` arguments (--set ...)")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="bench-schedule-")
    folder = Path(scratch.name)
    train_args = ["--config", args.config] if args.config else tiny_arguments(folder)
    if args.config is None and args.epochs is None:
        args.epochs = 3
    from odssam.config import load_config

    configured_epochs = load_config(train_args[1]).train.epochs
    schedule = args.schedule or (configured_epochs if args.config else args.epochs)
    epochs = args.epochs or configured_epochs
    run_dir = args.run_dir or folder / "run"
    argv = ["train", *train_args, "--run-dir", str(run_dir), "--no-progress", "--set", f"train.epochs={epochs}"]
    argv += args.train_args

    clock = PhaseClock(_sync)
    for name, phase in PHASES.items():
        clock.wrap(name, phase)
    print("$ odssam", " ".join(argv), flush=True)
    status = odssam_main(argv)
    total = time.perf_counter() - PROCESS_START
    if status not in (0, 1):  # 1: the final evaluation skipped an image, the run itself completed
        raise SystemExit(f"odssam train exited with {status}")
    startup = (clock.first_phase_at or PROCESS_START) - PROCESS_START
    measured = len(clock.calls["train_one_epoch"])
    phases = split(clock, total, startup)
    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "command": "odssam " + " ".join(argv),
        "epochs_run": measured,
        "wall_seconds": total,
        "phases": phases,
        "epoch_step_seconds": clock.calls["train_one_epoch"],
        "epoch_checkpoint_seconds": clock.calls["save_epoch_checkpoints"],
    }
    print(f"{measured} epochs in {total:.1f} s on {result['device']}")
    for phase in ORDER:
        print(f"  {phase:<18} {phases[phase]:8.1f} s")
    if measured and schedule != measured:
        scaled = extrapolate(phases, clock, measured, schedule)
        result["extrapolated"] = {"epochs": schedule, "wall_seconds": sum(scaled.values()), "phases": scaled}
        print(f"extrapolated to {schedule} epochs (measured {measured}): {sum(scaled.values()):.1f} s")
        for phase in ORDER:
            print(f"  {phase:<18} {scaled[phase]:8.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    scratch.cleanup()


if __name__ == "__main__":
    sys.exit(main())
