"""Listing and reading the map files that ``odssam metrics`` scores, without ever blocking.

A folder of predictions or ground truths may hold anything: named pipes, sockets, device
files, broken symbolic links, link loops, folders named like images, damaged files. Each
is reported as a :class:`SkippedInput` (the path and a one-line reason) and the rest is
still read. Only regular files are opened: :func:`scan_folder` checks ``os.stat`` before
listing a file, and :func:`read_map` checks ``os.fstat`` on a descriptor opened with
``O_NONBLOCK`` before reading, so a file swapped for a pipe in between cannot hang a run.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from odssam.data.image_io import special_file_kind, stat_failure
from odssam.errors import OdsSamError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# ``odssam predict --probability-format npy`` writes float32 HxW maps.
MAP_SUFFIXES = IMAGE_SUFFIXES + (".npy",)
_TIFF_SUFFIXES = (".tif", ".tiff")


# --------------------------------------------------------------------------- skipped inputs


class InputError(OdsSamError):
    """One input file cannot be scored; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = _one_line(reason)
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class SkippedInput:
    """An input left out of the scores, and why (one line)."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class SkipList:
    """Collects the inputs that cannot be scored.

    Args:
        strict: Raise :class:`InputError` for the first problem instead of collecting it.
    """

    strict: bool = False
    items: list[SkippedInput] = field(default_factory=list)

    def add(self, path: str | os.PathLike, reason: str) -> None:
        """Record (or, when strict, raise) that ``path`` is skipped for ``reason``."""
        error = InputError(path, reason)
        if self.strict:
            raise error
        self.items.append(SkippedInput(error.path, error.reason))

    def add_error(self, error: InputError) -> None:
        """Record (or, when strict, re-raise) a failed read."""
        if self.strict:
            raise error
        self.items.append(SkippedInput(error.path, error.reason))

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- listing


def is_map_name(name: str) -> bool:
    """Whether a file name has one of :data:`MAP_SUFFIXES` and is not hidden."""
    return not name.startswith(".") and Path(name).suffix.lower() in MAP_SUFFIXES


def scan_folder(folder: Path, *, recursive: bool, skips: SkipList, role: str) -> list[Path]:
    """Regular map files of ``folder`` (and its sub-folders with ``recursive``), sorted.

    Files named like maps that are not regular files (pipes, sockets, devices), broken
    links, link loops and (without ``recursive``) folders named like images go to
    ``skips``. Hidden files and files with other suffixes are ignored. Linked sub-folders
    are followed once.

    Args:
        folder: The folder.
        recursive: Descend into sub-folders.
        skips: Receives the entries that are skipped.
        role: ``"prediction"`` or ``"ground-truth"``, for messages.

    Raises:
        OdsSamError: If ``folder`` is not a readable folder.
    """
    try:
        root = os.stat(folder)
    except OSError as error:
        raise OdsSamError(f"{folder}: {role} folder does not exist ({error.strerror or error})") from error
    if not stat.S_ISDIR(root.st_mode):
        raise OdsSamError(f"{folder}: {role} folder is {special_file_kind(root.st_mode)}, not a folder")
    files: list[Path] = []
    visited: set[tuple[int, int]] = set()

    def walk(directory: Path, info: os.stat_result) -> None:
        visited.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(directory) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as error:
            if directory == folder:
                raise OdsSamError(f"{folder}: cannot list the {role} folder ({error.strerror or error})") from error
            skips.add(directory, f"cannot list folder ({error.strerror or error})")
            return
        for name in names:
            if name.startswith("."):
                continue
            path = directory / name
            named_like_map = is_map_name(name)
            try:
                entry = os.stat(path)  # follows links: what a read would open
            except OSError as error:
                # A dangling link without a map suffix may have been a sub-folder.
                if named_like_map or (recursive and path.is_symlink()):
                    skips.add(path, stat_failure(path, error))
                continue
            if stat.S_ISDIR(entry.st_mode):
                if recursive:
                    if (entry.st_dev, entry.st_ino) in visited:
                        skips.add(path, "link to a folder already read (a loop): not followed")
                    else:
                        walk(path, entry)
                elif named_like_map:
                    skips.add(path, "a folder named like an image file")
                continue
            if not named_like_map:
                continue
            if not stat.S_ISREG(entry.st_mode):
                skips.add(path, f"{special_file_kind(entry.st_mode)}, not a regular file: not opened")
                continue
            files.append(path)

    walk(folder, root)
    return sorted(files)


# --------------------------------------------------------------------------- reading


def open_regular_file(path: Path) -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file; never blocks.

    ``O_NONBLOCK`` makes opening a named pipe return at once; ``fstat`` on the descriptor
    then refuses it, whatever the folder listing saw earlier.

    Raises:
        InputError: If the file is missing, inaccessible or not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise InputError(path, stat_failure(path, error)) from error
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(path, f"{special_file_kind(mode)}, not a regular file: not read")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_map(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel map: ``uint8``, ``uint16``, ``bool`` or float ``HxW``.

    Image files go through PIL (colour becomes luminance, ITU-R 601, as PIL's "L" mode);
    TIFFs PIL cannot open through ``tifffile``; ``.npy`` files through ``numpy.load``
    without pickles (``HxW``, ``1xHxW`` or ``HxWx1``).

    Raises:
        InputError: Naming the file, if it cannot be opened or decoded, or holds no
            single-channel map.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with open_regular_file(path) as stream:
        try:
            if suffix == ".npy":
                array = np.load(stream, allow_pickle=False)
            else:
                array = _read_image(stream, path)
        except InputError:
            raise
        except UnidentifiedImageError as error:  # its message names the stream, not the file
            reason = "cannot read image (not a PNG/JPEG/BMP/TIFF file, or its header is damaged)"
            raise InputError(path, reason) from error
        except Exception as error:  # noqa: BLE001 - decoders raise many types for damaged files
            kind = "array" if suffix == ".npy" else "image"
            raise InputError(path, f"cannot read {kind} ({type(error).__name__}: {error})") from error
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array[0] if array.shape[0] == 1 else array[..., 0]
    if array.ndim != 2:
        raise InputError(path, f"expected a single-channel map, got shape {array.shape}")
    if array.size == 0:
        raise InputError(path, f"empty map ({array.shape[0]}x{array.shape[1]})")
    return array


def _read_image(stream: BinaryIO, path: Path) -> np.ndarray:
    try:
        with Image.open(stream) as image:
            image.load()
            return _from_pil(image, path)
    except InputError:
        raise
    except Exception:
        if path.suffix.lower() not in _TIFF_SUFFIXES:
            raise
    stream.seek(0)
    return _read_tiff(stream)


def _from_pil(image: Image.Image, path: Path) -> np.ndarray:
    if image.mode == "1":
        return np.asarray(image, dtype=bool)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 65535:
            raise InputError(path, "32-bit integer map outside 0..65535")
        return array.astype(np.uint8 if array.max() <= 255 else np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode == "LA":
        return np.asarray(image.getchannel("L"))
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image)


def _read_tiff(stream: BinaryIO) -> np.ndarray:
    import tifffile

    array = tifffile.imread(stream)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(array[..., :3])).convert("L"))
    return array
