"""Atomic writes: content, permissions of the final file, nothing left behind on failure."""

import os
import stat

import pytest

from odssam.utils import atomic
from odssam.utils.atomic import FILE_MODE, atomic_open, atomic_write, atomic_write_bytes, atomic_write_text


class _WriterFailed(Exception):
    pass


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_bytes_and_text_round_trip(tmp_path):
    assert atomic_write_bytes(tmp_path / "a.bin", b"\x00\xffdata").read_bytes() == b"\x00\xffdata"
    assert atomic_write_text(tmp_path / "b.txt", "grüße\n").read_bytes() == "grüße\n".encode("utf-8")


def test_write_callback_gets_a_binary_file_and_parents_are_created(tmp_path):
    target = tmp_path / "deep" / "er" / "out.bin"
    assert atomic_write(target, lambda file: file.write(b"abc")) == target
    assert target.read_bytes() == b"abc"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_write_replaces_an_existing_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_final_file_has_ordinary_permissions_not_the_temp_files_0600(tmp_path):
    assert FILE_MODE == 0o666 & ~_process_umask()
    for path in (
        atomic_write_bytes(tmp_path / "a.bin", b"x"),
        atomic_write_text(tmp_path / "b.txt", "x", encoding="ascii"),
        atomic_write(tmp_path / "c.bin", lambda file: file.write(b"x"), fsync=True),
    ):
        assert _mode(path) == FILE_MODE


def test_permissions_follow_the_umask_read_at_import(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "FILE_MODE", 0o640)
    assert _mode(atomic_write_bytes(tmp_path / "a.bin", b"x")) == 0o640


def test_umask_is_read_without_being_changed():
    before = _process_umask()
    assert atomic._read_umask() == before
    assert _process_umask() == before


def test_failing_writer_leaves_no_temp_file_and_no_target(tmp_path):
    def write(file):
        file.write(b"half")
        raise _WriterFailed

    with pytest.raises(_WriterFailed):
        atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []


def test_failing_writer_leaves_the_existing_file_untouched(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous")
    os.chmod(target, 0o600)

    def write(file):
        file.write(b"truncated")
        raise _WriterFailed

    with pytest.raises(_WriterFailed):
        atomic_write(target, write, fsync=True)
    assert target.read_bytes() == b"previous"
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_atomic_open_discards_content_rejected_inside_the_block(tmp_path):
    target = tmp_path / "model.pth"
    with pytest.raises(ValueError, match="digest"):
        with atomic_open(target, suffix=".part", fsync=True) as file:
            file.write(b"downloaded")
            (temp_file,) = tmp_path.iterdir()
            assert temp_file.name.startswith(".model.pth.") and temp_file.name.endswith(".part")
            raise ValueError("digest mismatch")
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_puts_content_in_place_on_success(tmp_path):
    target = tmp_path / "model.pth"
    with atomic_open(target, suffix=".part") as file:
        file.write(b"weights")
        assert not target.exists()
    assert target.read_bytes() == b"weights"
    assert _mode(target) == FILE_MODE


def test_long_file_name_still_gets_a_valid_temp_name(tmp_path):
    target = tmp_path / ("n" * 250 + ".txt")
    assert atomic_write_text(target, "ok").read_text() == "ok"
