"""An ordered, bounded thread-pool map: decode the next images while the model runs.

Image decoding (PIL, tifffile) and resizing (torch) release the GIL for most of their
work, so a few threads keep the model fed without the start-up cost and pickling of
worker processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Outcome(Generic[Item, Result]):
    """The result of applying the function to one item, or the exception it raised.

    Attributes:
        item: The input item.
        value: The function's return value (``None`` on error).
        error: The exception raised (``None`` on success).
    """

    __slots__ = ("item", "value", "error")

    def __init__(self, item: Item, value: Result | None = None, error: Exception | None = None):
        self.item = item
        self.value = value
        self.error = error


def _call(function: Callable[[Item], Result], item: Item) -> Outcome[Item, Result]:
    try:
        return Outcome(item, function(item))
    except Exception as error:  # noqa: BLE001 - handed to the consumer, who reports it
        return Outcome(item, error=error)


def prefetch_map(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    workers: int = 2,
    window: int = 8,
) -> Iterator[Outcome[Item, Result]]:
    """Apply ``function`` to ``items`` in background threads, yielding outcomes in input order.

    At most ``window`` items are in flight (submitted but not yet consumed), which bounds
    the memory held by decoded images. An exception raised by ``function`` does not stop
    the map: it is returned in that item's :class:`Outcome`.

    Args:
        function: Called once per item, in a worker thread.
        items: The inputs; consumed lazily.
        workers: Worker threads; 0 runs ``function`` inline in the caller's thread.
        window: Items in flight ahead of the consumer (at least ``workers``).

    Yields:
        One :class:`Outcome` per item, in the order of ``items``.
    """
    if workers <= 0:
        for item in items:
            yield _call(function, item)
        return
    window = max(window, workers, 1)
    iterator = iter(items)
    pending: deque[Future] = deque()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="odssam-decode")
    try:
        for item in iterator:
            pending.append(executor.submit(_call, function, item))
            if len(pending) >= window:
                break
        while pending:
            outcome = pending.popleft().result()
            for item in iterator:
                pending.append(executor.submit(_call, function, item))
                break
            yield outcome
    finally:
        # Reached on exhaustion and when the consumer stops early (generator closed).
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
