"""The long fuzz run: thousands of generated bad inputs through every command, plus kill/resume cycles.

Not collected by pytest (no ``test_`` prefix). From the repository root::

    python3 tests/reliability/fuzz.py --count 10000 --kill-cycles 50

Prints the counts per category and per command, and the first example of each failure
(its command line and output). Exit 1 if any unexpected TRACEBACK, HANG or WRONG occurred.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import concurrent.futures
import functools
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1] / "src")]

import numpy as np  # noqa: E402

from cases import GENERATORS, make_world  # noqa: E402
from expected_failures import expected_failure  # noqa: E402
from runner import FAILURES, run_case  # noqa: E402


# Cases per generator in a run of 10,000: cheap, varied inputs many; training, export and
# evaluation (seconds each) fewer; option-only generators (demo, weights download) few.
SHARES = {
    "metrics": 2300, "data_check": 2300, "config_file": 2300, "override": 1200, "weights_verify": 600,
    "predict_image": 300, "forward_image": 200, "predict_checkpoint": 200, "eval_checkpoint": 60,
    "eval_dataset": 60, "train_dataset": 25, "export_checkpoint": 60, "resume_checkpoint": 60,
    "output_folder": 40, "weights_download": 100, "demo": 100,
}


def allocation(count: int, minimum: int = 3) -> dict[str, int]:
    """Cases per generator: :data:`SHARES` scaled to ``count`` in all, at least ``minimum`` each."""
    total = sum(SHARES.values())
    shares = {name: max(minimum, round(count * share / total)) for name, share in SHARES.items()}
    shares["metrics"] += max(count - sum(shares.values()), 0)
    return shares


class Tally:
    """Counts by category and by command; the first example of every failure kind."""

    def __init__(self) -> None:
        self.by_category = collections.Counter()
        self.by_command: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.examples: dict[tuple, str] = {}
        self.expected: collections.Counter = collections.Counter()
        self.unexpected = 0
        self.stale: set[tuple[str, str]] = set()

    def add(self, case, outcome) -> None:
        listed = expected_failure(case.command, case.kind)
        category = outcome.category
        if category in FAILURES and listed:
            self.expected[(listed[0], category)] += 1
            category = f"{category} (expected, area {listed[0]})"
        elif category in FAILURES:
            self.unexpected += 1
        elif listed:
            self.stale.add((case.command, case.kind))
        self.by_category[category] += 1
        self.by_command[case.command][category] += 1
        if outcome.category in FAILURES:
            key = (case.command, case.kind.split(":")[0], outcome.category, bool(listed))
            if key not in self.examples:
                self.examples[key] = (f"{case.kind}: odssam {' '.join(case.argv)}\n    -> {outcome.detail}\n"
                                      f"    output tail: {outcome.output[-600:]!r}")

    def merge(self, other: Tally) -> None:
        self.by_category.update(other.by_category)
        for command, counts in other.by_command.items():
            self.by_command[command].update(counts)
        for key, text in other.examples.items():
            self.examples.setdefault(key, text)
        self.expected.update(other.expected)
        self.unexpected += other.unexpected
        self.stale |= other.stale

    def print(self, seconds: float, file=None) -> None:
        print = functools.partial(builtins.print, file=file or sys.stdout)
        total = sum(self.by_category.values())
        print(f"\n{total} runs in {seconds:.0f} s")
        for category, number in sorted(self.by_category.items()):
            print(f"  {category:42s} {number}")
        print("per command:")
        for command, counts in sorted(self.by_command.items()):
            print(f"  {command:18s} " + ", ".join(f"{c}: {n}" for c, n in sorted(counts.items())))
        for (command, area, category, listed), text in sorted(self.examples.items()):
            print(f"first {category} of {command} on {area} inputs{' (expected)' if listed else ''}:\n  {text}")
        if self.stale:
            print("listed as expected failures but passed:", sorted(self.stale))
        print(f"unexpected failures: {self.unexpected}")


def plan(count: int, seed: int, only: list[str] | None) -> list[tuple[int, str]]:
    """``(case index, generator name)`` of every case, shuffled (seeded)."""
    shares = allocation(count)
    if only:
        shares = {name: shares[name] for name in only}
    print("cases per generator:", dict(shares), flush=True)
    names = [name for name, number in shares.items() for _ in range(number)]
    np.random.default_rng(seed).shuffle(names)
    return list(enumerate(names))


def run_slice(job: int, cases: list[tuple[int, str]], seed: int, workdir: Path, log_every: int,
              summary: Path | None) -> Tally:
    """Run ``cases`` in this process (its own copy of the shared inputs); the counts."""
    import torch

    torch.set_num_threads(1)
    tally = Tally()
    world = make_world(workdir / f"world{job}")
    start = time.perf_counter()
    for done, (index, name) in enumerate(cases, start=1):
        factory, _ = GENERATORS[name]
        folder = workdir / "cases" / f"{index:05d}"
        case = factory(world, np.random.default_rng([seed, index]), folder)
        tally.add(case, run_case(case, timeout=120))
        shutil.rmtree(folder, ignore_errors=True)
        if log_every and done % log_every == 0:
            print(f"job {job}: {done}/{len(cases)} in {time.perf_counter() - start:.0f} s: "
                  f"{dict(tally.by_category)}", flush=True)
            if summary:  # the counts so far, in case the run is stopped
                with open(f"{summary}.job{job}", "w") as stream:
                    tally.print(time.perf_counter() - start, file=stream)
    return tally


def fuzz(count: int, seed: int, workdir: Path, only: list[str] | None, tally: Tally, log_every: int,
         summary: Path | None = None, jobs: int = 1) -> None:
    """Run the planned cases in ``jobs`` processes (1: in this one) and add their counts to ``tally``."""
    cases = plan(count, seed, only)
    slices = [(job, cases[job::jobs], seed, workdir, log_every, summary) for job in range(jobs)]
    if jobs == 1:
        tally.merge(run_slice(*slices[0]))
        return
    # Not multiprocessing.Pool: its workers are daemonic, and a daemonic process may not start
    # the DataLoader workers that eval and train cases start in-process.
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for part in pool.map(run_slice, *zip(*slices)):
            tally.merge(part)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="generated inputs (default 10000)")
    parser.add_argument("--kill-cycles", type=int, default=50, help="kill -9 / --resume cycles (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=sorted(GENERATORS), help="only these generators")
    parser.add_argument("--jobs", type=int, default=1, help="processes running cases side by side (default 1)")
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--summary", type=Path, help="also write the counts so far to this file at each log line")
    args = parser.parse_args()
    tally = Tally()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="odssam-fuzz-") as workdir:
        if args.count:
            fuzz(args.count, args.seed, Path(workdir), args.only, tally, args.log_every, args.summary, args.jobs)
        if args.kill_cycles:
            from kill_resume import kill_resume_cycles

            kill_resume_cycles(args.kill_cycles, Path(workdir) / "kill", args.seed, tally)
    tally.print(time.perf_counter() - start)
    return 1 if tally.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
