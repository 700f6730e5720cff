"""``kill -9`` during ``odssam train``, then ``--resume``: the run must end bit-identical to an uninterrupted one.

A chain starts a training subprocess, kills it (SIGKILL) at a random moment after the run
folder appears, resumes, kills again ..., then lets the last resume finish and compares
its ``last.pt`` with the reference run's, tensor by tensor. After every kill the files
left must be whole: ``last.pt`` (when there is one) loads and ``metrics.jsonl`` parses.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from helpers import TINY_CONFIG

import bad_inputs as bad
from runner import OK, WRONG, Case, Outcome, child_env, classify

def train_argv(dataset: Path, run_dir: Path, cache: Path, resume: bool, epochs: int) -> list[str]:
    settings = [f"data.root={dataset}", f"train.epochs={epochs}", "train.final_eval=false", f"train.cache_dir={cache}"]
    start = ["--resume", str(run_dir)] if resume else ["--config", str(TINY_CONFIG), "--run-dir", str(run_dir)]
    return [*start, *[arg for item in settings for arg in ("--set", item)], "--device", "cpu", "--no-progress"]


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "odssam", "train", *argv], env=child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def _finish(argv: list[str], what: str, timeout: float = 600) -> Outcome:
    child = _start(argv)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        return classify(Case("train", what, argv, "ok"), None, out, err, "hang")
    return classify(Case("train", what, argv, "ok"), child.returncode, out, err, None)


def _kill_at_random(argv: list[str], run_dir: Path, rng: np.random.Generator, seconds: float,
                    what: str) -> Outcome | None:
    """Start training, SIGKILL it ``0..seconds`` after its run folder appears; None if killed, else its outcome."""
    child = _start(argv)
    deadline = time.monotonic() + 120
    while not (run_dir / "config.yaml").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(float(rng.uniform(0, seconds)))
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
        child.communicate()
        return None
    out, err = child.communicate()  # it ended before the kill: it must have ended well
    return classify(Case("train", what, argv, "ok"), child.returncode, out, err, None)


def _kind(run_dir: Path, final: bool = False) -> str:
    if not (run_dir / "config.yaml").exists():
        return "kill:start"
    if not (run_dir / "last.pt").exists():
        return "kill:resume_before_first_checkpoint"
    return "kill:final_resume" if final else "kill:resume"


def _left_whole(run_dir: Path) -> str | None:
    """What a kill damaged in ``run_dir`` (None: nothing)."""
    import torch

    last = run_dir / "last.pt"
    if last.exists():
        try:
            torch.load(last, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any failure to load is the finding
            return f"last.pt left unreadable by a kill: {error}"
    history = run_dir / "metrics.jsonl"
    if history.exists():
        for line in history.read_text().splitlines():
            try:
                json.loads(line)
            except ValueError:
                return f"metrics.jsonl left with a broken line: {line[:80]!r}"
    return None


def _same_weights(run_dir: Path, reference: Path) -> str | None:
    import torch

    got = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    want = torch.load(reference / "last.pt", map_location="cpu", weights_only=True)
    if (got["epoch"], got["step"]) != (want["epoch"], want["step"]):
        return f"resumed run ended at epoch/step {got['epoch']}/{got['step']}, not {want['epoch']}/{want['step']}"
    for name, value in want["prompt_encoder"].items():
        if not torch.equal(got["prompt_encoder"][name], value):
            return f"resumed run differs from the uninterrupted one in {name}"
    losses = [[(row["epoch"], row["train_loss"]) for row in map(json.loads, (folder / "metrics.jsonl").read_text()
                                                                   .splitlines())] for folder in (run_dir, reference)]
    if losses[0] != losses[1]:
        return f"metrics.jsonl of the resumed run {losses[0]} differs from the uninterrupted {losses[1]}"
    return None


def kill_resume_cycles(cycles: int, workdir: Path, seed: int, tally, per_chain: int = 5, images: int = 8,
                       epochs: int = 4) -> None:
    """``cycles`` kills in chains of ``per_chain``; every outcome goes to ``tally.add(case, outcome)``.

    The run trains on ``images`` generated images at batch 2 for ``epochs`` epochs (a
    checkpoint after each): the default is 16 steps.
    """
    rng = np.random.default_rng(seed)
    dataset = bad.write_folder_dataset(workdir / "dataset", rng, train=images, test=2)
    reference = workdir / "reference"
    start = time.monotonic()
    outcome = _finish(train_argv(dataset, reference, workdir / "reference-cache", False, epochs), "kill:reference")
    assert outcome.category == OK, outcome
    seconds = time.monotonic() - start - 8  # the training part (Python and torch take ~8 s to start)
    done, chain = 0, 0
    while done < cycles:
        chain += 1
        run_dir, cache = workdir / f"chain{chain}", workdir / f"cache{chain}"
        for _ in range(min(per_chain, cycles - done)):
            kind = _kind(run_dir)
            argv = train_argv(dataset, run_dir, cache, kind != "kill:start", epochs)
            ended = _kill_at_random(argv, run_dir, rng, max(seconds, 1.0), kind)
            done += 1
            damage = _left_whole(run_dir)
            outcome = Outcome(WRONG, damage) if damage else (ended or Outcome(OK, "killed"))
            tally.add(Case("train", kind, argv, "ok"), outcome)
            if outcome.category != OK:
                break  # the chain cannot go on from a failed resume
        kind = _kind(run_dir, final=True)
        argv = train_argv(dataset, run_dir, cache, kind != "kill:start", epochs)
        outcome = _finish(argv, kind)
        if outcome.category == OK:
            different = _same_weights(run_dir, reference)
            outcome = Outcome(WRONG, different) if different else outcome
        tally.add(Case("train", kind, argv, "ok"), outcome)
