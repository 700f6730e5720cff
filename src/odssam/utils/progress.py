"""Progress: a ``tqdm`` bar on a terminal, plain log lines everywhere else.

A bar redrawn with carriage returns floods a log file, a CI log or ``| tee`` with thousands
of partial lines; when the stream is not a terminal (or ``tqdm`` is missing) progress is
one line every 10 % or every 30 seconds instead::

    epoch 3/10: 40% 360/900 img, 12.3 img/s, ETA 0:41
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

LINE_EVERY_PERCENT = 10
LINE_EVERY_SECONDS = 30.0


def progress_bar(
    iterable: Iterable | None,
    desc: str = "",
    total: int | None = None,
    leave: bool = False,
    *,
    unit: str = "it",
    stream: TextIO | None = None,
    **kwargs,
):
    """A progress wrapper of ``iterable`` (or, with ``None``, one to advance by ``update``).

    Args:
        iterable: What to iterate, or ``None`` for a counter advanced by ``update(n)``.
        desc: Label at the start of each line (e.g. ``"epoch 3/10"``).
        total: Number of steps, if known (default: ``len(iterable)`` when it has one).
        leave: Keep the finished ``tqdm`` bar on screen.
        unit: Name of one step in the text (``"it"``, ``"img"``).
        stream: Where to write (default: ``sys.stderr`` at call time).
        **kwargs: Further ``tqdm`` arguments (terminal only).

    Returns:
        A ``tqdm`` bar when ``stream`` is a terminal and ``tqdm`` is installed, else a
        :class:`PlainProgress`. Both iterate like ``iterable`` and offer ``update``,
        ``set_postfix`` and ``close``.
    """
    stream = sys.stderr if stream is None else stream
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if _is_terminal(stream):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(
                iterable, desc=desc, total=total, leave=leave, unit=unit, dynamic_ncols=True, file=stream, **kwargs
            )
    return PlainProgress(iterable, desc=desc, total=total, unit=unit, stream=stream)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PlainProgress:
    """Progress as whole log lines: one every ``every_percent`` % of ``total`` or every ``every_seconds``.

    Args:
        iterable: What to iterate, or ``None`` for a counter advanced by :meth:`update`.
        desc: Label at the start of each line.
        total: Number of steps (``None``: lines by time only, without percent or ETA).
        unit: Name of one step.
        stream: Where the lines go.
        every_percent: Percent of ``total`` between lines.
        every_seconds: Longest time between lines.
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        desc: str = "",
        total: int | None = None,
        unit: str = "it",
        stream: TextIO | None = None,
        every_percent: float = LINE_EVERY_PERCENT,
        every_seconds: float = LINE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.iterable = iterable
        self.desc = desc
        self.total = total
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self.clock = clock
        self.count = 0
        self.postfix = ""
        self._start = clock()
        self._last_line_time = self._start
        self._last_line_count = 0
        self._closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return len(self.iterable)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps; write a line when a percent step or the time interval is passed."""
        self.count += n
        now = self.clock()
        if self._percent_step(self.count) > self._percent_step(self._last_line_count):
            self._write(now)
        elif now - self._last_line_time >= self.every_seconds:
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        """Values appended to the next lines (``loss=0.1234``)."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        """Write the final count if the last line did not show it."""
        if not self._closed and self.count != self._last_line_count:
            self._write(self.clock())
        self._closed = True

    def line(self, now: float | None = None) -> str:
        """The current progress line, e.g. ``epoch 3/10: 40% 360/900 img, 12.3 img/s, ETA 0:41``."""
        now = self.clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.count / elapsed
        label = f"{self.desc}: " if self.desc else ""
        if self.total:
            done = f"{100 * self.count / self.total:.0f}% {self.count}/{self.total} {self.unit}"
        else:
            done = f"{self.count} {self.unit}"
        parts = [f"{label}{done}"]
        if self.count > 0:
            # Slow work (a large model on the CPU) reads better as seconds per step.
            parts.append(f"{rate:.1f} {self.unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{self.unit}")
        if self.total and self.count > 0:
            parts.append(f"ETA {format_duration(max(self.total - self.count, 0) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _percent_step(self, count: int) -> int:
        if not self.total or self.every_percent <= 0:
            return 0
        return int(100 * count / self.total // self.every_percent)

    def _write(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self._last_line_time, self._last_line_count = now, self.count


def format_duration(seconds: float) -> str:
    """``0:41``, ``12:05`` or ``3:02:10`` (hours only when needed)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
