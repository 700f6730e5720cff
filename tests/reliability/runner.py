"""Run one ``odssam`` command on one input and classify what happened.

A :class:`Case` is a command line plus what the input is (bad, valid, or either) and,
for exit 0, a check of what the command wrote. :func:`run_case` runs it in this process
(``odssam.cli.main.main(argv)`` under an alarm) or as a subprocess with a timeout, and
:func:`classify` sorts the outcome into one of:

- ``ok``: exit 0 and the outputs check out;
- ``clean error``: exit 1 or 2 and a message that names the file or config key;
- ``TRACEBACK``: a Python traceback (in-process: an exception out of ``main``), or an
  exit code other than 0/1/2;
- ``HANG``: the time limit ran out;
- ``WRONG``: exit 0 with missing or NaN outputs, a bad input taken as good, a valid
  input refused, or an error that does not say which file or key is wrong.

Nothing here imports odssam before a case runs, so the same runner drives any checkout.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

OK, CLEAN, TRACEBACK, HANG, WRONG = "ok", "clean error", "TRACEBACK", "HANG", "WRONG"
FAILURES = (TRACEBACK, HANG, WRONG)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    """One command on one (usually bad) input.

    Attributes:
        command: ``predict``, ``data check``, ...: the first words of ``argv``.
        kind: What the input is, ``area:detail`` (``image:truncated``): the key of the
            expected-failure table and of the counts.
        argv: The arguments after ``odssam``.
        expect: ``error`` (the input is bad: exit 0 is WRONG), ``ok`` (the input is valid:
            an error is WRONG) or ``either``.
        names: Strings of which an error message must hold one (file name, config key).
        check: After exit 0: ``None`` if the outputs are right, else what is wrong.
        subprocess: Run as a child process (kill/resume, commands that change process state).
        cleanup: Called after the run (unmounting a file system made for the case).
    """

    command: str
    kind: str
    argv: list[str]
    expect: str = "error"
    names: tuple[str, ...] = ()
    check: Callable[[], str | None] | None = None
    subprocess: bool = False
    cleanup: Callable[[], None] | None = None


@dataclass
class Outcome:
    category: str
    detail: str
    code: int | None = None
    seconds: float = 0.0
    output: str = field(default="", repr=False)


class Hang(BaseException):
    """Raised by the alarm; a BaseException, so that no ``except Exception`` in odssam swallows it."""


def run_case(case: Case, timeout: float = 120) -> Outcome:
    """Run ``case`` and classify it (see the module docstring)."""
    start = time.perf_counter()
    try:
        if case.subprocess:
            code, out, err, crash = _run_child(case.argv, timeout)
        else:
            code, out, err, crash = _run_here(case.argv, timeout)
        outcome = classify(case, code, out, err, crash)
    finally:
        if case.cleanup:
            case.cleanup()
    outcome.seconds = time.perf_counter() - start
    outcome.output = (out + err)[-4000:]
    return outcome


def _run_here(argv: list[str], timeout: float) -> tuple[int | None, str, str, str | None]:
    """``(exit code, stdout, stderr, crash)``; crash: ``"hang"`` or the exception's traceback."""
    from odssam.cli.main import main

    out, err = io.StringIO(), io.StringIO()

    def expire(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    crash, code = None, None
    cwd = os.getcwd()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except Hang:
        crash = "hang"
    except SystemExit as stop:  # argparse: usage errors and --help
        code = stop.code if isinstance(stop.code, int) else 2
    except BaseException:  # noqa: BLE001 - anything else out of main is a crash
        import traceback

        crash = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue(), crash


def child_env() -> dict[str, str]:
    """The environment of a child ``odssam``: this checkout's sources first on the path."""
    path = os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def _run_child(argv: list[str], timeout: float) -> tuple[int | None, str, str, str | None]:
    command = [sys.executable, "-m", "odssam", *argv]
    try:
        done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        return None, _text(expired.stdout), _text(expired.stderr), "hang"
    return done.returncode, done.stdout, done.stderr, None


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def classify(case: Case, code: int | None, out: str, err: str, crash: str | None) -> Outcome:
    """The category of one run (module docstring) and a one-line reason."""
    if crash == "hang":
        return Outcome(HANG, "no exit within the time limit", code)
    if crash is not None:
        return Outcome(TRACEBACK, crash.strip().splitlines()[-1], code)
    if "Traceback (most recent call last)" in err:
        lines = [line for line in err.splitlines() if line.strip()]
        return Outcome(TRACEBACK, f"traceback on stderr: {lines[-1] if lines else ''}", code)
    if code not in (0, 1, 2):
        return Outcome(TRACEBACK, f"unexpected exit code {code}: {_last_line(err)}", code)
    if code == 0:
        if case.expect == "error":
            return Outcome(WRONG, f"bad input accepted (exit 0): {_last_line(out)}", code)
        problem = case.check() if case.check else None
        return Outcome(WRONG, problem, code) if problem else Outcome(OK, "", code)
    message = _error_message(code, out, err)
    if case.expect == "ok":
        return Outcome(WRONG, f"valid input refused (exit {code}): {message}", code)
    names = [name for name in case.names if name]  # an empty name would match every message
    if names and not any(name in message for name in names):
        return Outcome(WRONG, f"error does not name {' or '.join(names)}: {message}", code)
    return Outcome(CLEAN, message, code)


def _error_message(code: int, out: str, err: str) -> str:
    """The ``error:`` line and the list under it if there is one; else everything printed
    (exit 1, and exit 2 of commands that list each skipped input before giving up)."""
    lines = [line for line in (out + "\n" + err).splitlines() if line.strip()]
    starts = [index for index, line in enumerate(lines) if "error: " in line]
    return " | ".join(lines[starts[-1]:] if code == 2 and starts else lines)[-3000:]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
