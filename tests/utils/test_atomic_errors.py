"""Writes the filesystem refuses (full disk, read-only folder), write probes and orphan temp files."""

import errno
import os
import time

import pytest
import torch
from helpers import make_unwritable

from odssam.checkpoint import save_checkpoint
from odssam.errors import OdsSamError
from odssam.utils import atomic
from odssam.utils.atomic import (
    atomic_open,
    atomic_write,
    atomic_write_text,
    check_writable_folder,
    is_orphan_temp_name,
    remove_orphan_temp_files,
)


class _FullDisk:
    """A file whose writes fail as on a full disk once ``room`` bytes are written."""

    def __init__(self, file, room: int):
        self._file, self._room = file, room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)


def _fill_disk_after(monkeypatch, room: int) -> None:
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda *args, **kwargs: _FullDisk(real_fdopen(*args, **kwargs), room))


def test_a_full_disk_is_one_error_naming_the_file_and_the_previous_file_survives(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("previous")
    _fill_disk_after(monkeypatch, room=4)
    with pytest.raises(OdsSamError) as error:
        atomic_write_text(target, "a longer new report")
    message = str(error.value)
    assert message == f"cannot write {target}: No space left on device (the previous file is unchanged)"
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    last = save_checkpoint(tmp_path / "last.pt", {"weights": torch.zeros(4)})
    previous = torch.load(last, weights_only=True)["weights"]
    _fill_disk_after(monkeypatch, room=1000)  # torch.save writes far more than this
    with pytest.raises(OdsSamError, match=rf"^cannot write {last}: No space left on device \(the previous file"):
        save_checkpoint(last, {"weights": torch.ones(100_000)})
    assert torch.equal(torch.load(last, weights_only=True)["weights"], previous)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_full_disk_on_a_new_file_says_nothing_was_written(tmp_path, monkeypatch):
    _fill_disk_after(monkeypatch, room=0)
    with pytest.raises(OdsSamError, match=r"No space left on device \(nothing was written\)$"):
        atomic_write(tmp_path / "new.bin", lambda file: file.write(b"x"))
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_folder_is_one_error_naming_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "reports"
    (folder / "report.md").parent.mkdir()
    (folder / "report.md").write_text("previous")
    make_unwritable(folder, monkeypatch)
    for target in (folder / "report.md", folder / "sub" / "figure.png"):
        with pytest.raises(OdsSamError, match=rf"^cannot write {target}: (Permission denied|Read-only file system)"):
            atomic_write_text(target, "new")
    assert (folder / "report.md").read_text() == "previous"
    assert sorted(p.name for p in folder.iterdir()) == ["report.md"]


def test_other_errors_in_the_block_pass_through_unchanged(tmp_path):
    with pytest.raises(OSError) as error:
        with atomic_open(tmp_path / "out.bin"):
            raise OSError(errno.ECONNRESET, "connection reset")  # e.g. a download, not the disk
    assert not isinstance(error.value, OdsSamError) and error.value.errno == errno.ECONNRESET
    assert list(tmp_path.iterdir()) == []


def test_the_write_check_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "a" / "b"
    assert check_writable_folder(folder) == folder
    assert list(tmp_path.iterdir()) == []  # the folders it created are gone again
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("x")
    check_writable_folder(tmp_path / "kept")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["old.txt"]


def test_unwritable_folder_is_one_error_naming_it(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    make_unwritable(folder, monkeypatch)
    with pytest.raises(OdsSamError, match=rf"^run folder {folder} is not writable: "):
        check_writable_folder(folder, "run folder")
    with pytest.raises(OdsSamError, match=rf"^output folder {folder / 'new'} is not writable: "):
        check_writable_folder(folder / "new")
    assert list(folder.iterdir()) == []


def test_a_file_in_place_of_the_folder_is_named(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(OdsSamError, match=rf"^output folder {tmp_path / 'out'} is a file, not a folder$"):
        check_writable_folder(tmp_path / "out")


def test_the_temp_names_of_atomic_writes_are_recognised(tmp_path):
    target = tmp_path / ("checkpoint-with-a-very-long-name-" * 4 + ".pt")
    with atomic_open(target) as file:
        file.write(b"x")
        (temp,) = [p for p in tmp_path.iterdir() if p != target]
    assert is_orphan_temp_name(temp.name)
    with atomic_open(tmp_path / "weights.pth", suffix=".part") as file:  # downloads: not ours to clean
        (part,) = [p.name for p in tmp_path.iterdir() if p.suffix == ".part"]
    assert not is_orphan_temp_name(part)


def test_orphan_temp_files_are_removed_and_nothing_else(tmp_path):
    orphans = [".last.pt.k3_9abzq.tmp", ".metrics.jsonl.00000000.tmp", ".odssam-probe.abcdefgh.tmp"]
    kept = ["last.pt", "notes.tmp", ".last.pt.short.tmp", ".hidden.tmp", ".w.pth.abcdefgh.part", "x.abcdefgh.tmp"]
    for name in orphans + kept:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / ".split.json.abcdefgh.tmp").write_bytes(b"x")  # sub-folders: not touched
    removed = remove_orphan_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(orphans)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["splits"])
    assert remove_orphan_temp_files(tmp_path / "missing") == []


def test_orphans_in_sub_folders_and_only_old_ones_when_asked(tmp_path):
    old, fresh = tmp_path / "v1" / "ab" / ".k1.npy.abcdefgh.tmp", tmp_path / "v1" / "cd" / ".k2.npy.abcdefgh.tmp"
    for temp in (old, fresh):
        temp.parent.mkdir(parents=True)
        temp.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert remove_orphan_temp_files(tmp_path) == []  # not recursive by default
    assert remove_orphan_temp_files(tmp_path, recursive=True, older_than_s=600) == [old]
    assert fresh.exists() and not old.exists()
    assert remove_orphan_temp_files(tmp_path, recursive=True) == [fresh]
