"""Every command on a CI-sized sample of generated bad inputs: no traceback, no hang, nothing silently wrong.

Each generator of :mod:`cases` draws a few seeded cases (``CI_COUNTS``); the long run is
``tests/reliability/fuzz.py``. A case listed in :mod:`expected_failures` (its fix is in
another branch) may fail; any other failing case fails the test, with its command line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cases import GENERATORS
from expected_failures import EXPECTED_FAILURES, expected_failure
from fuzz import Tally
from kill_resume import kill_resume_cycles
from runner import CLEAN, FAILURES, HANG, OK, TRACEBACK, WRONG, Case, classify, run_case

# Cases per generator in CI: the cheap ones many, training and export a couple (~3 min in all on 2 cores).
CI_COUNTS = {
    "predict_image": 8, "forward_image": 3, "metrics": 12, "data_check": 15, "train_dataset": 2,
    "eval_dataset": 4, "config_file": 20, "override": 12, "predict_checkpoint": 8, "eval_checkpoint": 3,
    "export_checkpoint": 1, "resume_checkpoint": 2, "weights_verify": 8, "weights_download": 3,
    "output_folder": 5, "demo": 5,
}


def _failures(cases_and_outcomes) -> list[str]:
    """One line per failing case that the expected-failure table does not list."""
    return [f"{outcome.category}: {case.kind}: odssam {' '.join(case.argv)}\n  -> {outcome.detail}\n"
            f"  output: {outcome.output[-800:]}"
            for case, outcome in cases_and_outcomes
            if outcome.category in FAILURES and not expected_failure(case.command, case.kind)]


def test_every_generator_has_a_ci_count():
    assert set(CI_COUNTS) == set(GENERATORS)


@pytest.mark.parametrize("name", sorted(CI_COUNTS))
def test_no_traceback_hang_or_wrong_result(world, tmp_path, name):
    factory, _ = GENERATORS[name]
    seen = []
    for index in range(CI_COUNTS[name]):
        case = factory(world, np.random.default_rng([7, index]), tmp_path / f"case{index}")
        seen.append((case, run_case(case, timeout=120)))
    assert all(outcome.category in (OK, CLEAN, *FAILURES) for _, outcome in seen)
    problems = _failures(seen)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["data_check"])
def test_a_child_process_gives_the_same_outcome_as_a_run_in_process(world, tmp_path, name):
    factory, _ = GENERATORS[name]
    here = factory(world, np.random.default_rng([8, 0]), tmp_path / "here")
    child = factory(world, np.random.default_rng([8, 0]), tmp_path / "child")
    child.subprocess = True
    in_process, as_child = run_case(here), run_case(child, timeout=300)
    assert in_process.category in (OK, CLEAN), in_process
    assert (as_child.category, as_child.code) == (in_process.category, in_process.code), as_child


def test_kill_9_during_training_then_resume_ends_bit_identical(tmp_path):
    torch.set_num_threads(1)
    tally = Tally()
    kill_resume_cycles(1, tmp_path, seed=3, tally=tally, per_chain=1, images=4, epochs=2)
    assert sum(tally.by_category.values()) == 2  # one kill and the resume that finishes the run
    assert tally.unexpected == 0, tally.examples


# --------------------------------------------------------------------------- the classifier itself


def _case(expect="error", names=("bad.png",), check=None) -> Case:
    return Case("predict", "image:test", ["predict"], expect, names, check)


@pytest.mark.parametrize(
    "case, code, out, err, crash, category",
    [
        (_case(), 2, "", "odssam predict: error: bad.png: not an image\n", None, CLEAN),
        (_case(), 1, "skipped: /x/bad.png: cannot read\n", "", None, CLEAN),
        (_case(), 2, "", "odssam predict: error: something failed\n", None, WRONG),  # names no file
        (_case(names=("", "bad.png")), 2, "", "odssam predict: error: failed\n", None, WRONG),  # "" names nothing
        (_case(), 0, "done\n", "", None, WRONG),  # a bad input taken as good
        (_case(expect="ok"), 2, "", "odssam predict: error: bad.png: no\n", None, WRONG),  # a valid one refused
        (_case(expect="either", check=lambda: "probabilities hold NaN"), 0, "", "", None, WRONG),
        (_case(expect="either", check=lambda: None), 0, "", "", None, OK),
        (_case(), 2, "", "Traceback (most recent call last):\n  ...\nKeyError: 3\n", None, TRACEBACK),
        (_case(), 3, "", "odssam predict: internal error\n", None, TRACEBACK),
        (_case(), None, "", "", "Traceback ...\nValueError: x", TRACEBACK),
        (_case(), None, "", "", "hang", HANG),
    ],
)
def test_classify(case, code, out, err, crash, category):
    assert classify(case, code, out, err, crash).category == category


def test_an_exception_out_of_main_and_a_hang_are_caught_in_process(tmp_path, monkeypatch):
    import os

    from odssam.cli import main as cli_main

    def explode(argv):
        raise KeyError("boom")

    monkeypatch.setattr(cli_main, "main", explode)
    assert run_case(_case()).category == TRACEBACK
    os.mkfifo(tmp_path / "pipe")
    monkeypatch.setattr(cli_main, "main", lambda argv: open(tmp_path / "pipe").read())  # blocks for ever
    outcome = run_case(_case(), timeout=0.5)
    assert outcome.category == HANG and outcome.seconds < 10


def test_expected_failure_rows_name_an_area_and_a_reason():
    for (command, kind), (area, reason) in EXPECTED_FAILURES.items():
        assert area in ("A", "B", "C", "D") and reason and ":" in kind, (command, kind)
