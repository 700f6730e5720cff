"""The ordered thread-pool map that decodes images ahead of the model."""

from __future__ import annotations

import threading
import time

import pytest

from odssam.inference.prefetch import prefetch_map


def _slow_square(value: int) -> int:
    time.sleep(0.002 * (value % 3))  # later items often finish first
    if value == 4:
        raise ValueError("four is unreadable")
    return value * value


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_outcomes_keep_the_input_order_and_carry_errors(workers):
    outcomes = list(prefetch_map(_slow_square, range(8), workers=workers, window=4))
    assert [o.item for o in outcomes] == list(range(8))
    assert [o.value for o in outcomes if o.error is None] == [0, 1, 4, 9, 25, 36, 49]
    assert isinstance(outcomes[4].error, ValueError) and outcomes[4].value is None


def test_work_in_flight_is_bounded_by_the_window():
    started = []
    lock = threading.Lock()

    def record(value: int) -> int:
        with lock:
            started.append(value)
        return value

    stream = prefetch_map(record, range(100), workers=2, window=5)
    first = next(stream)
    time.sleep(0.05)
    with lock:
        assert first.item == 0 and len(started) <= 6
    stream.close()


def test_stopping_early_shuts_the_threads_down():
    before = threading.active_count()
    stream = prefetch_map(_slow_square, range(1000), workers=3, window=6)
    next(stream)
    stream.close()
    assert threading.active_count() <= before
