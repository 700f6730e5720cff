"""Bounded background writing: file writes on a few threads, their errors raised on the caller's thread.

PNG encoding, ``np.save`` and file writes release the GIL for most of their work, so a few
threads keep a GPU's outputs flowing to disk while the caller prepares the next batch.
Used by :class:`~odssam.inference.io.PredictionWriter` and the embedding-cache builder
(:func:`odssam.engine.cache.build_embedding_cache`).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# PNG encoding of one Kvasir-size overlay takes ~30 ms of one core: a GPU predicting 60 img/s
# needs about 4 writers; more than 8 only compete with the decoding threads.
MAX_DEFAULT_WRITE_THREADS = 8


def default_write_threads() -> int:
    """Writer threads for this host: one per core, at most :data:`MAX_DEFAULT_WRITE_THREADS`."""
    return min(MAX_DEFAULT_WRITE_THREADS, os.cpu_count() or 1)


class WritePool:
    """Runs write jobs on background threads with a bounded queue; ``threads=0`` runs them inline.

    :meth:`submit` waits for the oldest jobs once ``max_pending`` are queued, which bounds
    the memory the queued arrays hold. A failed job's exception is raised on the caller's
    thread by a later :meth:`submit` or by :meth:`close`, never lost; :meth:`close` returns
    only when every job has finished.

    Args:
        threads: Writer threads (0: each job runs inside :meth:`submit`).
        max_pending: Jobs queued or running before :meth:`submit` waits (default ``4 * threads``).
        name: Thread-name prefix.
    """

    def __init__(self, threads: int, max_pending: int | None = None, name: str = "odssam-write"):
        self.threads = max(0, int(threads))
        self.max_pending = max(1, max_pending if max_pending is not None else 4 * self.threads)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix=name) if self.threads else None
        self._pending: deque[Future] = deque()

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Queue ``job(*args)``; raises the error of an earlier job that failed."""
        if self._executor is None:
            job(*args)
            return
        self._pending.append(self._executor.submit(job, *args))
        if len(self._pending) >= self.max_pending:
            self._wait(keep=self.max_pending // 2)

    def _wait(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.popleft().result()  # re-raises a failed job

    def close(self) -> None:
        """Wait for every job and stop the threads; raises the first failure among the jobs left."""
        try:
            self._wait()
        finally:
            self._shutdown(cancel=False)

    def cancel(self) -> None:
        """Drop the jobs not started yet and wait for the running ones (the caller is failing anyway)."""
        self._shutdown(cancel=True)

    def _shutdown(self, cancel: bool) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None
        self._pending.clear()

    def __enter__(self) -> WritePool:
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self.cancel()
