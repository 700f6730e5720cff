"""Checkpoint writes off the training thread: one writer thread, at most one write pending.

The training thread hands over a snapshot (:func:`~odssam.checkpoint.checkpoint_payload`
copies every tensor to the CPU, so the next optimizer step, which updates the weights and
Adam's moments in place, cannot change what is written). The writer thread computes the
digest and writes the file with :func:`~odssam.checkpoint.save_checkpoint` (atomic, fsync),
the one checkpoint writer. Without a thread (``train.checkpoint_async: false``) the same
calls run on the training thread.

A failed write (a full disk: an :class:`~odssam.errors.OdsSamError`) is raised on the
training thread by the next :meth:`CheckpointWriter.submit`, :meth:`~CheckpointWriter.wait`
or :meth:`~CheckpointWriter.close`.
"""

from __future__ import annotations

import sys
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from odssam.checkpoint import save_checkpoint

Write = tuple[Path, dict[str, Any]]  # a checkpoint file and its payload (a CPU snapshot)

_open_writers: weakref.WeakSet[CheckpointWriter] = weakref.WeakSet()


class CheckpointWriter:
    """Writes checkpoint payloads in order, in a background thread or (``background=False``) at once.

    Use as a context manager: leaving it waits for the pending write; its error is raised
    then, unless another exception is already leaving (the write's error is printed then).
    """

    def __init__(self, background: bool = True):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odssam-checkpoint") if background else None
        self._pending: Future | None = None
        _open_writers.add(self)

    def submit(self, writes: Sequence[Write]) -> None:
        """Write each ``(path, payload)`` in order, after the pending write (whose error is raised here)."""
        self.wait()
        if self._pool is None:
            _write_all(list(writes))
        else:
            self._pending = self._pool.submit(_write_all, list(writes))

    def wait(self) -> None:
        """Block until the pending write is on disk; raise its error, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def settle(self) -> BaseException | None:
        """Block until the pending write is done, without raising: its error stays for :meth:`wait`."""
        return self._pending.exception() if self._pending is not None else None

    def close(self) -> None:
        """Wait for the pending write (raising its error) and end the writer thread."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            _open_writers.discard(self)

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.close()
            return
        failed = self.settle()  # the write in flight still lands: the folder keeps a whole file
        self._pending = None
        self.close()
        if failed is not None:  # said, not raised: the exception already leaving is the one to report
            print(f"the last checkpoint write failed too: {failed}", file=sys.stderr)


def settle_pending_writes() -> None:
    """Wait for every writer's pending write (errors stay for the writer): before reading ``last.pt`` back."""
    for writer in list(_open_writers):
        writer.settle()


def _write_all(writes: list[Write]) -> None:
    for path, payload in writes:
        save_checkpoint(path, payload)
