"""The quick check of a split before training: headers and file ends, not pixels.

:func:`odssam.data.check.check_dataset` (``odssam data check``) decodes every file;
training reads the same files again minutes later, so before its first step it runs this
cheaper form of the same checks on every entry it will read, and refuses the data when
any of them would stop the run:

- the image and its mask are regular files whose headers can be read;
- neither ends early: a PNG reaches its ``IEND`` chunk with valid CRCs, a JPEG has its
  end-of-image marker, a TIFF's first-page strips lie inside the file, a BMP is as long as
  its header says (a file failing this is decoded to decide); an XML annotation
  (MoNuSeg) parses, with valid vertices;
- the mask is as large as the image;
- the image fits the model's input (:meth:`PreprocessSpec.size_problem`).

Mask values (colour masks, soft edges ...) need a full decode: ``odssam data check`` audits
them; training binarises every mask the same way whatever its values.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from odssam.data.image_io import JPEG_EXTENSIONS, TIFF_EXTENSIONS, file_kind_problem, read_image
from odssam.data.index import Entry, Issue
from odssam.data.polygons import read_polygons
from odssam.errors import OdsSamError
from odssam.models.transforms import PreprocessSpec

# A JPEG's end-of-image marker; entropy-coded data never holds it (0xFF is stuffed with 0x00),
# but some writers pad the file after it, so the last bytes are searched, not the last two.
_JPEG_END = b"\xff\xd9"
_JPEG_TAIL = 4096


def entry_issues(entry: Entry, split: str, spec: PreprocessSpec | None = None) -> list[Issue]:
    """Problems that would stop training or evaluation on ``entry``, found without decoding pixels.

    Args:
        entry: The image and mask to check.
        split: The split it belongs to (recorded in each issue).
        spec: The model's preprocessing, to check that the image fits its input; ``None``
            when images are resized to squares first (``data.image_size``).

    Returns:
        One ``error`` issue per problem, naming the file.
    """
    try:
        height, width = header_size(entry.image_path)
    except OdsSamError as error:
        return [Issue("error", _without_path(error, entry.image_path), str(entry.image_path), split)]
    issues = []
    problem = spec.size_problem(height, width) if spec is not None else None
    if problem is not None:
        issues.append(Issue("error", problem, str(entry.image_path), split))
    if entry.mask_path is None or entry.mask_kind == "empty":
        return issues
    try:
        _check_mask(entry, height, width)
    except OdsSamError as error:
        issues.append(Issue("error", _without_path(error, entry.mask_path), str(entry.mask_path), split))
    return issues


def _check_mask(entry: Entry, height: int, width: int) -> None:
    if entry.mask_kind == "polygons":
        _require_regular(entry.mask_path)
        read_polygons(entry.mask_path)  # parses the whole file: a truncated XML fails here
        return
    mask_height, mask_width = header_size(entry.mask_path)
    if (mask_height, mask_width) != (height, width):
        raise OdsSamError(
            f"size mismatch: mask is {mask_width}x{mask_height} (WxH) but image {entry.image_path} "
            f"is {width}x{height}"
        )


def header_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header, after checking that the file is whole.

    A file whose end looks wrong is decoded to decide, so a file passes exactly when
    decoding it would (PIL reads a PNG that lost its ``IEND`` chunk, for one).

    Raises:
        OdsSamError: If the file is not a regular file, its header cannot be read, or its
            data cannot be decoded; the message names the file.
    """
    path = Path(path)
    _require_regular(path)
    try:
        height, width, whole = _header(path)
    except Exception:  # noqa: BLE001 - PIL and tifffile raise many types for bad headers
        whole = False
    if not whole:
        # Decoding decides, and names the file when it fails: the message data check gives.
        height, width = read_image(path).shape[:2]  # masks too: any layout becomes HxWx3
    return height, width


def _header(path: Path) -> tuple[int, int, bool]:
    """``(height, width, whether the file's end looks whole)`` from the header and the end."""
    if path.suffix.lower() in TIFF_EXTENSIONS:
        return _tiff_header(path)
    with Image.open(path) as image:
        width, height = image.size
        image_format = image.format
        if image_format == "PNG":
            try:
                image.verify()  # every chunk's CRC up to IEND, nothing decompressed
            except Exception:  # noqa: BLE001
                return height, width, False
    if image_format == "JPEG" or path.suffix.lower() in JPEG_EXTENSIONS:
        return height, width, _jpeg_has_end(path)
    if image_format == "BMP":
        return height, width, _bmp_has_length(path)
    return height, width, True


def _require_regular(path: Path) -> None:
    problem = file_kind_problem(path)
    if problem is not None:
        raise OdsSamError(f"{path}: {problem}")


def _jpeg_has_end(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(max(0, os.fstat(stream.fileno()).st_size - _JPEG_TAIL))
        return _JPEG_END in stream.read()


def _bmp_has_length(path: Path) -> bool:
    with open(path, "rb") as stream:
        declared = int.from_bytes(stream.read(6)[2:6], "little")  # bfSize; 0 when a writer omits it
        return declared <= os.fstat(stream.fileno()).st_size


def _tiff_header(path: Path) -> tuple[int, int, bool]:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        height, width = int(page.imagelength), int(page.imagewidth)
        ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts)]
    whole = not ends or max(ends) <= os.path.getsize(path)  # every strip of the first page inside the file
    return height, width, whole and height > 0 and width > 0


def _without_path(error: OdsSamError, path: Path | str) -> str:
    """The message of ``error`` without its leading ``<path>: `` (the issue carries the path)."""
    message, prefix = str(error), f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message
