"""Atomic file writes: a reader never sees a half-written file, a failed write leaves none.

Content goes to a temporary file in the destination's folder, which is then renamed over
the destination (``os.replace``, atomic on one filesystem). Temporary files are created
owner-only (``0600``); the finished file gets the permissions of an ordinary new file
(``0o666`` less the process umask), so reports, figures and checkpoints stay readable by
whoever could read any other output.

A folder that cannot take the file (full disk, quota, read-only filesystem, no permission)
is reported as one :class:`~odssam.errors.OdsSamError` line naming the file; the previous
file is then unchanged and the temporary file removed. A temporary file that a killed
process left behind (``.<name>.<8 random characters>.tmp``) is recognised by
:func:`is_orphan_temp_name` and removed by :func:`remove_orphan_temp_files`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from odssam.errors import OdsSamError

# Long destination names would push the temporary name past the filesystem's name limit.
_TEMP_PREFIX_CHARS = 64
TEMP_SUFFIX = ".tmp"
# ``.<destination name>.<mkstemp's 8 random characters>.tmp``: the names atomic_open gives.
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))

# The destination's filesystem refuses the file: the user's to fix, not a bug in odssam.
WRITE_ERRNOS = frozenset(
    code for code in (getattr(errno, name, None) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM"))
    if code is not None
)


def _read_umask() -> int:
    """The process umask, read without changing it where the platform allows.

    ``os.umask`` can only be read by setting it, which for a moment gives files created by
    other threads the wrong mode; Linux reports it in ``/proc/self/status`` instead.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (normally before any worker thread exists).
FILE_MODE = 0o666 & ~_read_umask()


def is_write_error(error: BaseException) -> bool:
    """Whether ``error`` says the filesystem refuses a write (full, read-only, no permission)."""
    return isinstance(error, OSError) and error.errno in WRITE_ERRNOS


def _refused_write(error: BaseException) -> OSError | None:
    """The write error behind ``error``, if any: itself or one it was raised while handling.

    A writer may hide the disk's error behind its own: ``torch.save`` answers a full disk
    with a ``RuntimeError`` from finishing its zip archive, raised while handling the ``OSError``.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if is_write_error(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_error(path: str | os.PathLike, error: OSError) -> OdsSamError:
    """The one-line error for a write to ``path`` that the filesystem refused with ``error``."""
    kept = "the previous file is unchanged" if Path(path).exists() else "nothing was written"
    return OdsSamError(f"cannot write {path}: {error.strerror or error} ({kept})")


@contextmanager
def atomic_open(path: str | os.PathLike, *, suffix: str = TEMP_SUFFIX, fsync: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    An exception inside the block deletes the temporary file and leaves ``path`` as it was,
    so the block may also check what it wrote (e.g. a digest) and raise to discard it.
    A write the filesystem refuses (:data:`WRITE_ERRNOS`: full disk, read-only, no
    permission), in the block or around it, is raised as :class:`OdsSamError` naming ``path``.

    Args:
        path: Destination; its parent folder is created if missing.
        suffix: Ending of the temporary file's name (e.g. ``".part"`` for downloads).
        fsync: Flush the content to disk before the rename, so a power loss cannot leave
            an empty or truncated file under the final name.

    Yields:
        The temporary file, open for binary writing.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{path.name[:_TEMP_PREFIX_CHARS]}.", suffix=suffix, dir=path.parent
        )
    except OSError as error:
        if is_write_error(error):
            raise write_error(path, error) from error
        raise
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            if fsync:
                os.fsync(file.fileno())
            _set_file_mode(file.fileno(), temp_name)
        os.replace(temp_name, path)
    except BaseException as error:
        try:
            Path(temp_name).unlink(missing_ok=True)
        except OSError:  # e.g. the filesystem went read-only: the original error matters more
            pass
        refused = _refused_write(error) if isinstance(error, Exception) and not isinstance(error, OdsSamError) else None
        if refused is not None:
            raise write_error(path, refused) from error
        raise


def _set_file_mode(handle: int, name: str) -> None:
    if hasattr(os, "fchmod"):
        os.fchmod(handle, FILE_MODE)
    else:  # no fchmod (Windows before Python 3.13)
        os.chmod(name, FILE_MODE)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, fsync: bool = False) -> Path:
    """Write ``path`` atomically through ``write``, a callback given the open binary file.

    Args:
        path: Destination; its parent folder is created if missing.
        write: Writes the whole content to the file it is given (e.g. ``torch.save``).
        fsync: Flush the content to disk before the rename (see :func:`atomic_open`).

    Returns:
        The destination path.
    """
    path = Path(path)
    with atomic_open(path, fsync=fsync) as file:
        write(file)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the destination path."""
    return atomic_write(path, lambda file: file.write(data), fsync=fsync)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 unless told); returns the destination path."""
    return atomic_write_bytes(path, text.encode(encoding))


def check_writable_folder(folder: str | os.PathLike, role: str = "output folder") -> Path:
    """Prove that ``folder`` can be written: create it, write and remove a probe file.

    Commands call this before any long work, so an unwritable destination fails at once
    rather than after hours of computation. The check leaves nothing behind: folders it had
    to create are removed again (the writers create them when they write), so a command
    that fails later leaves no empty output folder.

    Args:
        folder: The folder a command will write into.
        role: What the folder is, for the message (e.g. ``"run folder"``).

    Returns:
        ``folder`` as a path.

    Raises:
        OdsSamError: One line naming the folder and why it cannot be written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OdsSamError(f"{role} {folder} is a file, not a folder")
    missing = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Named like atomic_open's temporary files, so a probe left by a kill is cleaned up too.
        handle, probe = tempfile.mkstemp(prefix=".odssam-probe.", suffix=TEMP_SUFFIX, dir=folder)
        try:
            os.write(handle, b"odssam write probe\n")
        finally:
            os.close(handle)
            # Rank 0 of a distributed run may already have removed it as an orphan.
            Path(probe).unlink(missing_ok=True)
    except OSError as error:
        raise OdsSamError(f"{role} {folder} is not writable: {error.strerror or error}") from error
    finally:
        for created in missing:
            try:
                created.rmdir()
            except OSError:  # not created by us after all, or no longer empty (another writer)
                break
    return folder


def is_orphan_temp_name(name: str) -> bool:
    """Whether ``name`` is that of a temporary file of :func:`atomic_open` (default suffix)."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_orphan_temp_files(
    folder: str | os.PathLike, *, recursive: bool = False, older_than_s: float = 0.0
) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in ``folder``.

    Only names :func:`is_orphan_temp_name` recognises are touched. A live write's temporary
    file looks the same, so call it where no other process writes, or give ``older_than_s``:
    a live temporary file is written to (its modification time moves) until it is renamed
    a moment later, so one untouched for minutes was left by a killed process.

    Args:
        folder: Where to look (a missing folder holds nothing).
        recursive: Also look in every sub-folder.
        older_than_s: Only files last modified at least this many seconds ago.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    try:
        if recursive:
            candidates = [Path(parent) / name for parent, _, names in os.walk(folder) for name in names]
        else:
            candidates = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):  # missing, or removed meanwhile: nothing to remove
        return []
    newest = time.time() - older_than_s
    removed = []
    for entry in candidates:
        if not is_orphan_temp_name(entry.name):
            continue
        try:
            details = entry.lstat()
            if not stat.S_ISREG(details.st_mode) or (older_than_s and details.st_mtime > newest):
                continue
            entry.unlink()
        except FileNotFoundError:  # renamed or removed meanwhile
            continue
        removed.append(entry)
    return removed
