"""Decoding images and masks from the formats the datasets ship in.

Images become HxWx3 uint8 RGB whatever their mode (grayscale, RGBA, palette, CMYK,
16-bit); masks become HxW bool. PIL decodes JPEG, PNG and BMP; TIFF goes through
``tifffile`` first because CVC-ClinicDB's RGB TIFFs declare a photometric
interpretation PIL rejects, and falls back to PIL for compressions ``tifffile`` cannot
decode without extra codecs (MoNuSeg's LZW tiles).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from odssam.errors import OdsSamError
from odssam.utils.atomic import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIFF_EXTENSIONS = (".tif", ".tiff")
JPEG_EXTENSIONS = (".jpg", ".jpeg")

# ITU-R 601-2 luma, the weights of PIL's RGB -> L conversion.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` and is not a hidden file."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def file_kind_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file, found without opening it; ``None`` for a regular file.

    Opening a named pipe for reading blocks until something writes to it, and a symbolic
    link loop or a folder named like an image only fails later with an obscure error, so
    data readers ask this first (``os.stat`` follows links; ``os.lstat`` tells a broken
    link from a missing file).

    Returns:
        ``None``, or a reason: ``file not found``, ``broken symbolic link``, ``symbolic
        link loop``, ``a folder, not a file``, ``<kind>, not a regular file`` for pipes,
        sockets and devices (:func:`special_file_kind`), or ``cannot be examined (...)``.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return stat_failure(Path(path), error)
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    return f"{special_file_kind(mode)}, not a regular file"


def stat_failure(path: Path, error: OSError) -> str:
    """Why ``os.stat(path)`` failed, in words: a missing file, a broken link, a link loop."""
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno == errno.ENOENT:
        if path.is_symlink():
            return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
        return "file not found"
    return f"cannot be examined ({error.strerror or error})"


def special_file_kind(mode: int) -> str:
    """What a file that is not a regular file is, from its ``st_mode``."""
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _require_regular_file(path: Path) -> None:
    problem = file_kind_problem(path)
    if problem is not None:
        raise OdsSamError(f"{path}: {problem}")


# --------------------------------------------------------------------------- decoding


def _read_tiff_array(path: Path) -> np.ndarray:
    import tifffile

    try:
        array = np.asarray(tifffile.imread(path, key=0))
        if array.ndim < 2 or array.size == 0:
            raise ValueError("no image data in the first page")
        return array
    except Exception as tiff_error:  # noqa: BLE001 - any decoder failure falls back to PIL
        try:
            with Image.open(path) as image:
                return _pil_to_array(image)
        except Exception as pil_error:  # noqa: BLE001
            raise OdsSamError(
                f"{path}: cannot read TIFF (tifffile: {tiff_error}; PIL: {pil_error})"
            ) from pil_error


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Array of a PIL image without losing bit depth; palette images become RGB(A)."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        image = image.convert("RGB")
    return np.asarray(image)


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
    except FileNotFoundError as error:
        raise OdsSamError(f"{path}: file not found") from error
    except Exception as error:  # noqa: BLE001 - PIL raises many types for bad files
        raise OdsSamError(f"{path}: not a readable image ({error})") from error
    return image


def _decode(path: Path, image: Image.Image) -> np.ndarray:
    try:
        with image:
            return _pil_to_array(image)
    except OdsSamError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated or corrupt data
        raise OdsSamError(f"{path}: cannot decode image data ({error})") from error


def read_array(path: str | Path) -> np.ndarray:
    """Decode an image file to a numpy array, keeping its dtype and channels.

    Raises:
        OdsSamError: If the file is missing or cannot be decoded.
    """
    path = Path(path)
    _require_regular_file(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        return _read_tiff_array(path)
    return _decode(path, _open(path))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an integer or float array to uint8 (16-bit: full range; float: [0, 1] or [0, 255])."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        scale = 255.0 if np.nanmax(array, initial=0.0) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(array) * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        wide = array.astype(np.int64)
        if array.dtype.itemsize == 1 or wide.max(initial=0) <= 255:
            return np.clip(wide, 0, 255).astype(np.uint8)
        # 16-bit data (also PIL's 32-bit "I" mode for 16-bit PNGs): map 0..65535 to 0..255.
        return ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
    raise OdsSamError(f"unsupported pixel type {array.dtype}")


def _channels_last(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (1, 2, 3, 4):
        return np.moveaxis(array, 0, -1)  # planar TIFF: CxHxW
    return array


def array_to_rgb(array: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
    """Convert a decoded HxW / HxWxC array to HxWx3 uint8 RGB (alpha dropped, gray replicated)."""
    array = _channels_last(np.squeeze(array) if array.ndim > 3 else array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        gray = to_uint8(array)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[-1] not in (2, 3, 4):
        raise OdsSamError(f"{path}: unsupported image shape {tuple(array.shape)}")
    if array.shape[-1] == 2:  # gray + alpha
        return np.repeat(to_uint8(array[..., 0])[:, :, None], 3, axis=2)
    return np.ascontiguousarray(to_uint8(array[..., :3]))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB.

    Raises:
        OdsSamError: If the file is missing, unreadable or not 2-D.
    """
    return array_to_rgb(read_array(path), path)


# --------------------------------------------------------------------------- masks


def mask_gray(array: np.ndarray) -> np.ndarray:
    """The single channel a mask is thresholded on: HxW as is, colour reduced to luma, alpha dropped."""
    array = _channels_last(array)
    if array.ndim == 3:
        if array.shape[-1] in (2, 4):
            array = array[..., :-1]  # drop alpha
        if array.shape[-1] == 1:
            array = array[..., 0]
        else:
            array = array[..., :3].astype(np.float32) @ _LUMA
    return array


def mask_threshold(gray: np.ndarray, lossy: bool = False) -> float:
    """The value above which a pixel of ``gray`` (from :func:`mask_gray`) is foreground.

    Float: 0.5 (127.5 if any value exceeds 1); integer: 0 for 0/1 masks (unless
    ``lossy``), 127 when values stay within 0..255, else 32767.
    """
    if np.issubdtype(gray.dtype, np.floating):
        return 127.5 if gray.max(initial=0) > 1.0 else 0.5
    top = int(gray.max(initial=0))
    if top <= 1 and not lossy:
        return 0
    return 127 if top <= 255 else 32767


def binarize_mask(array: np.ndarray, lossy: bool = False) -> np.ndarray:
    """Foreground of a mask array as HxW bool.

    Rules: bool stays; float is ``> 0.5``; integer masks whose values are only 0/1 are
    ``> 0`` (unless ``lossy``: JPEG noise could make a background pixel 1); 8-bit
    masks are ``> 127``; wider integer masks are ``> 127`` if they stay within 0..255,
    else ``> 32767``. Colour masks are reduced to luma first (see :func:`mask_threshold`).

    Args:
        array: HxW or HxWxC mask values.
        lossy: The mask comes from a lossy format (JPEG): always use the 127 threshold.
    """
    gray = mask_gray(array)
    if gray.dtype == np.bool_:
        return gray
    return gray > mask_threshold(gray, lossy)


@dataclass(frozen=True)
class MaskValues:
    """A mask file's pixel values before binarisation, and the rule :func:`read_mask` applies.

    Attributes:
        values: HxW or HxWxC array as decoded (JPEG: its luma plane; coloured palette:
            the palette indices; grey palette: the grey levels).
        rule: ``threshold`` (:func:`binarize_mask`), ``lossy`` (:func:`binarize_mask`
            with ``lossy=True``, for JPEG) or ``nonzero`` (palette index > 0).
    """

    values: np.ndarray
    rule: str = "threshold"

    def binarize(self) -> np.ndarray:
        """The HxW bool mask :func:`read_mask` returns."""
        if self.rule == "nonzero":
            return self.values > 0
        return binarize_mask(self.values, lossy=self.rule == "lossy")


def _palette_values(image: Image.Image) -> MaskValues:
    """Palette masks: grey palettes keep their grey levels, coloured ones use index > 0."""
    indices = np.asarray(image)
    palette = image.getpalette() or []
    colours = np.array(palette, dtype=np.int32).reshape(-1, 3) if palette else None
    if colours is not None and len(colours) > int(indices.max(initial=0)):
        used = colours[np.unique(indices)]
        if (used[:, 0] == used[:, 1]).all() and (used[:, 1] == used[:, 2]).all():
            return MaskValues(colours[indices, 0].astype(np.uint8))
    return MaskValues(indices, "nonzero")


def read_mask_values(path: str | Path) -> MaskValues:
    """Decode a binary mask file without thresholding it (what :func:`read_mask` binarises).

    JPEG masks (Kvasir-SEG) are decoded straight to luma and use the lossy rule.

    Raises:
        OdsSamError: If the file is missing, not a regular file or unreadable.
    """
    path = Path(path)
    _require_regular_file(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        return MaskValues(_read_tiff_array(path))
    image = _open(path)
    try:
        with image:
            if image.mode in ("P", "PA"):
                return _palette_values(image)
            if image.format == "JPEG":
                # Decoding only the luma plane skips colour conversion: ~2x faster.
                image.draft("L", image.size)
                return MaskValues(np.asarray(image.convert("L")), "lossy")
            return MaskValues(_pil_to_array(image))
    except OdsSamError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated or corrupt data
        raise OdsSamError(f"{path}: cannot decode mask data ({error})") from error


def read_mask(path: str | Path) -> np.ndarray:
    """Read a binary mask file as HxW bool (see :func:`binarize_mask` for thresholds).

    JPEG masks (Kvasir-SEG) are decoded straight to luma and thresholded at > 127.

    Raises:
        OdsSamError: If the file is missing, not a regular file or unreadable.
    """
    return read_mask_values(path).binarize()


def read_label_mask(path: str | Path) -> np.ndarray:
    """Read an instance-label map (GlaS ``*_anno.bmp``): any label > 0 is foreground.

    Palette maps use the palette index as the label; colour maps any non-zero channel.

    Raises:
        OdsSamError: If the file is missing or unreadable.
    """
    path = Path(path)
    _require_regular_file(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        labels = _read_tiff_array(path)
    else:
        image = _open(path)
        try:
            with image:
                labels = np.asarray(image.convert("L") if image.mode == "1" else image)
        except Exception as error:  # noqa: BLE001
            raise OdsSamError(f"{path}: cannot decode label map ({error})") from error
    labels = _channels_last(labels)
    if labels.ndim == 3:
        return (labels[..., :3] > 0).any(axis=-1) if labels.shape[-1] >= 3 else labels[..., 0] > 0
    return labels > 0


# --------------------------------------------------------------------------- resizing


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxWx3 uint8 image to ``size x size`` with (antialiased) bilinear filtering."""
    if image.shape[:2] == (size, size):
        return image
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxW bool mask to ``size x size`` by nearest neighbour (pixel centres)."""
    height, width = mask.shape
    if (height, width) == (size, size):
        return mask
    rows = np.minimum(((np.arange(size) + 0.5) * height / size).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * width / size).astype(np.int64), width - 1)
    return mask[rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------- writing


def write_png_atomic(array: np.ndarray, path: str | Path, *, compress_level: int = 6) -> Path:
    """Write a uint8 array (HxW or HxWx3; bool as 0/255) to ``path`` as PNG, atomically.

    Args:
        array: The pixels.
        path: Destination; its folder is created if missing.
        compress_level: zlib level, 0-9 (1: fastest; higher: smaller files, slower).
    """
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    image = Image.fromarray(array)
    return atomic_write(path, lambda stream: image.save(stream, format="PNG", compress_level=compress_level))
