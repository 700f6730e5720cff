"""Stopping a training run cleanly: the first SIGINT or SIGTERM ends it after the current epoch.

The first signal only sets a flag; the trainer checks it at the end of every epoch, writes
``last.pt`` and stops with :class:`TrainingInterrupted` (``odssam train`` exits 130 after
SIGINT, 143 after SIGTERM). A second signal stops at once, as without this module
(KeyboardInterrupt, or the signal's previous handler). Under DDP the flag is combined over
the processes, so all stop after the same epoch.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

import torch

from odssam.engine.distributed import DistInfo, all_reduce_sum

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped after a SIGINT/SIGTERM, with ``last.pt`` written for ``--resume``.

    A :class:`KeyboardInterrupt`, as an interrupted :func:`~odssam.engine.trainer.train`
    raised before; ``exit_code`` is the shell's code of the signal (130, 143).
    """

    def __init__(self, signal_number: int, epoch: int, run_dir: Path):
        self.signal_number, self.epoch, self.run_dir = signal_number, epoch, run_dir
        self.exit_code = 128 + signal_number
        super().__init__(f"interrupted: stopped after epoch {epoch}; last.pt saved; continue with --resume {run_dir}")


class StopRequest:
    """The stop flag and the signal handlers that set it (installed by :meth:`install`, main thread only)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()

    def install(self) -> None:
        """Catch SIGINT and SIGTERM (a no-op outside the main thread, where Python cannot).

        A signal the process ignores (e.g. SIGINT of a job started in the background) stays ignored.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for number in STOP_SIGNALS:
            if signal.getsignal(number) == signal.SIG_IGN:
                continue
            previous = signal.signal(number, self._on_signal)
            # None: a handler set outside Python, which cannot be put back; the default can.
            self._previous[number] = signal.SIG_DFL if previous is None else previous

    def restore(self, deliver_late_signal: bool = False) -> None:
        """Put the previous handlers back (idempotent).

        Args:
            deliver_late_signal: Hand a signal no epoch end acted on (it came after the last
                one) to the previous handler now, as if it had never been caught.
        """
        previous, self._previous = self._previous, {}
        for number, handler in previous.items():
            signal.signal(number, handler)
        if deliver_late_signal and previous and self.signal_number is not None:
            signal.raise_signal(self.signal_number)

    def agreed(self, info: DistInfo) -> int | None:
        """The signal that stops the run after this epoch, the same on every process (``None``: go on).

        One small all-reduce under DDP: SIGTERM on any process wins over SIGINT.
        """
        flags = torch.tensor([self.signal_number == number for number in STOP_SIGNALS], dtype=torch.int32)
        if info.is_distributed:
            flags = all_reduce_sum(flags.to(info.device), info).cpu()
        received = [number for number, flag in zip(STOP_SIGNALS, flags.tolist()) if flag]
        return max(received) if received else None

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            return  # a forked DataLoader worker got the terminal's Ctrl-C: the trainer decides
        if self.signal_number is None:
            self.signal_number = number
            name = signal.Signals(number).name
            # os.write, not print: a print interrupted by the signal cannot be re-entered.
            os.write(2, f"\n{name}: stopping after this epoch and saving last.pt (again to stop now)\n".encode())
            return
        previous = self._previous.get(number, signal.SIG_DFL)
        self.restore()
        if callable(previous):
            previous(number, frame)  # SIGINT's default raises KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            signal.raise_signal(number)
