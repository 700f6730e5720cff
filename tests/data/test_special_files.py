"""Entries that are not regular files: listed with their reason, never opened, nothing blocks."""

from __future__ import annotations

import os
import signal
import socket
from contextlib import contextmanager

import pytest

from odssam.data import build_dataset, check_dataset
from odssam.data.image_io import file_kind_problem, read_image, read_mask
from odssam.errors import OdsSamError

from data_layouts import make_binary_folder, make_monuseg

NAMES = ("a", "b", "c", "d")


@contextmanager
def deadline(seconds: int = 20):
    """Fail instead of hanging if something opens a named pipe for reading."""

    def expire(signum, frame):
        raise TimeoutError("blocked: a named pipe was opened")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _special_entries(folder, monkeypatch) -> dict[str, str]:
    """One of each kind in ``folder``, named like images; returns name -> expected reason."""
    os.mkfifo(folder / "pipe.png")
    (folder / "folder.png").mkdir()
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "broken.png").symlink_to("missing.png")
    monkeypatch.chdir(folder)  # a short relative path: socket paths are limited to ~100 bytes
    server = socket.socket(socket.AF_UNIX)
    server.bind("socket.png")
    server.close()
    return {
        "pipe.png": "named pipe (FIFO)",
        "folder.png": "a folder, not a file",
        "loop.png": "symbolic link loop",
        "broken.png": "broken symbolic link",
        "socket.png": "a socket",
    }


def test_file_kind_problem(tmp_path, monkeypatch):
    expected = _special_entries(tmp_path, monkeypatch)
    (tmp_path / "plain.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to("plain.png")
    assert file_kind_problem(tmp_path / "plain.png") is None
    assert file_kind_problem(tmp_path / "link.png") is None  # a link to a regular file is fine
    assert file_kind_problem(tmp_path / "absent.png") == "file not found"
    for name, reason in expected.items():
        assert reason in file_kind_problem(tmp_path / name)
    with deadline():
        for reader in (read_image, read_mask):
            with pytest.raises(OdsSamError, match=r"pipe\.png: a named pipe"):
                reader(tmp_path / "pipe.png")


def test_check_lists_every_special_entry(tmp_path, rng, monkeypatch):
    root = make_binary_folder(tmp_path / "own", rng, names=NAMES)
    expected = _special_entries(root / "images", monkeypatch)
    os.mkfifo(root / "masks" / "tmp.png")
    (root / "masks" / "a.png").unlink()
    os.mkfifo(root / "masks" / "a.png")  # the mask of a real image is a pipe
    with deadline():
        report = check_dataset("folder", root, progress=False)
    assert not report.ok
    problems = {issue.path: issue.message for issue in report.problems}
    for name, reason in expected.items():
        assert reason in problems[str(root / "images" / name)], report.format_text()
    assert "named pipe" in problems[str(root / "masks" / "a.png")]
    assert "named pipe" in problems[str(root / "masks" / "tmp.png")]
    assert "no mask for this image" in problems[str(root / "images" / "a.png")]
    assert len(problems) == len(expected) + 3
    assert sum(stats.readable for stats in report.splits.values()) == len(NAMES) - 1


def test_build_dataset_reports_every_problem_at_once(tmp_path, rng, monkeypatch):
    root = make_binary_folder(tmp_path / "own", rng, names=NAMES)
    expected = _special_entries(root / "images", monkeypatch)
    (root / "masks" / "b.png").unlink()
    with deadline(), pytest.raises(OdsSamError) as caught:
        build_dataset("folder", root, "train")
    message = str(caught.value)
    assert f"{len(expected) + 1} problem(s)" in message
    for name in [*expected, "b.png"]:
        assert name in message


def test_monuseg_annotation_that_is_a_pipe(tmp_path, rng):
    make_monuseg(tmp_path, rng)
    xml = tmp_path / "MoNuSegTrainingData" / "Annotations" / "TCGA-AA-0002.xml"
    xml.unlink()
    os.mkfifo(xml)
    with deadline():
        report = check_dataset("monuseg", tmp_path, progress=False)
    messages = [str(issue) for issue in report.problems]
    assert any(m.startswith(f"{xml}: a named pipe") for m in messages), messages
    assert any("TCGA-AA-0002.tif: no annotation" in m for m in messages), messages
