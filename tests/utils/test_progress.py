"""Progress: tqdm on a terminal, plain whole lines on a log file or pipe."""

from __future__ import annotations

import io
import re

import tqdm

from odssam.utils.progress import PlainProgress, format_duration, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_pipe_gets_one_whole_line_every_10_percent_and_no_carriage_returns():
    stream = io.StringIO()
    items = list(progress_bar(range(50), desc="epoch 3/10", stream=stream, unit="img"))
    assert items == list(range(50))
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10
    assert re.fullmatch(r"epoch 3/10: 10% 5/50 img, [\d.]+ (img/s|s/img), ETA \d+:\d\d", lines[0])
    assert lines[-1].startswith("epoch 3/10: 100% 50/50 img")


def test_line_shows_rate_eta_and_postfix():
    clock = _Clock()
    bar = PlainProgress(desc="epoch 3/10", total=900, unit="img", stream=io.StringIO(), clock=clock)
    clock.now = 29.3
    bar.update(360)
    bar.set_postfix(loss="0.1234")
    # 360 images in 29.3 s: 12.3 img/s, 540 left: 44 s.
    assert bar.line() == "epoch 3/10: 40% 360/900 img, 12.3 img/s, ETA 0:44, loss=0.1234"
    clock.now = 3 * 29.3
    assert bar.line().split(", ")[1] == "4.1 img/s"


def test_slow_steps_read_as_seconds_per_step_and_long_etas_have_hours():
    clock = _Clock()
    bar = PlainProgress(desc="predict", total=1000, unit="img", stream=io.StringIO(), clock=clock)
    clock.now = 40.0
    bar.update(1)
    assert bar.line() == "predict: 0% 1/1000 img, 40.0 s/img, ETA 11:06:00"
    assert format_duration(41) == "0:41" and format_duration(725) == "12:05" and format_duration(10930) == "3:02:10"


def test_a_line_every_interval_when_percent_steps_are_slow_and_without_total():
    clock = _Clock()
    stream = io.StringIO()
    bar = PlainProgress(desc="cache", total=None, unit="img", stream=stream, clock=clock, every_seconds=30)
    for _ in range(5):
        clock.now += 10
        bar.update(2)
    assert stream.getvalue().splitlines() == ["cache: 6 img, 5.0 s/img"]  # at 30 s, not before
    bar.close()
    bar.close()  # closing twice writes the final count once
    assert stream.getvalue().splitlines()[-1] == "cache: 10 img, 5.0 s/img"
    assert len(stream.getvalue().splitlines()) == 2


def test_counter_without_iterable_advances_by_update():
    stream = io.StringIO()
    bar = progress_bar(None, desc="predict", total=4, unit="img", stream=stream)
    assert isinstance(bar, PlainProgress)
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" img")[0] for line in lines] == [
        "predict: 25% 1/4", "predict: 50% 2/4", "predict: 75% 3/4", "predict: 100% 4/4"
    ]


def test_stopping_early_writes_where_it_stopped():
    stream = io.StringIO()
    for index in progress_bar(range(100), desc="epoch 1/1", stream=stream):
        if index == 14:
            break
    # As tqdm: the item in hand when the loop stops is not counted.
    assert stream.getvalue().splitlines()[-1].startswith("epoch 1/1: 14% 14/100 it")


def test_a_terminal_gets_a_tqdm_bar():
    stream = _Terminal()
    bar = progress_bar(range(3), desc="eval", stream=stream)
    assert isinstance(bar, tqdm.tqdm)
    assert list(bar) == [0, 1, 2]
    assert "\r" in stream.getvalue()


def test_default_stream_is_stderr_at_call_time(capsys):
    for _ in progress_bar(range(2), desc="eval"):
        pass
    captured = capsys.readouterr()
    assert captured.out == "" and "eval: 100% 2/2 it" in captured.err
