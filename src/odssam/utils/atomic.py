"""Atomic file writes: a reader never sees a half-written file, a failed write leaves none.

Content goes to a temporary file in the destination's folder, which is then renamed over
the destination (``os.replace``, atomic on one filesystem). Temporary files are created
owner-only (``0600``); the finished file gets the permissions of an ordinary new file
(``0o666`` less the process umask), so reports, figures and checkpoints stay readable by
whoever could read any other output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

# Long destination names would push the temporary name past the filesystem's name limit.
_TEMP_PREFIX_CHARS = 64


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


@contextmanager
def atomic_open(path: str | os.PathLike, *, suffix: str = ".tmp", fsync: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    An exception inside the block deletes the temporary file and leaves ``path`` as it was,
    so the block may also check what it wrote (e.g. a digest) and raise to discard it.

    Args:
        path: Destination; its parent folder is created if missing.
        suffix: Ending of the temporary file's name (e.g. ``".part"`` for downloads).
        fsync: Flush the content to disk before the rename, so a power loss cannot leave
            an empty or truncated file under the final name.

    Yields:
        The temporary file, open for binary writing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name[:_TEMP_PREFIX_CHARS]}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            if fsync:
                os.fsync(file.fileno())
            _set_file_mode(file.fileno(), temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
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
