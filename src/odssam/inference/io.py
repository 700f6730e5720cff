"""Inputs and outputs of prediction: which files to read, and what to write per image.

Inputs are image files, folders (their image files, sorted; ``recursive`` descends) and
glob patterns. Each image gets a unique output name: its stem, or its path relative to
the folder it was found in (sub-folders are kept).

Per image, :class:`PredictionWriter` writes under the output folder::

    masks/<name>.png            binary mask (0/255), original size
    probabilities/<name>.png    probability map as 8-bit grey (or <name>.npy, float32)
    overlays/<name>.png         the image with the mask filled in translucent cyan and outlined
    predictions.csv             name, source, height, width, max_score, area_fraction

Every file is written atomically (temporary file in the same folder, then renamed).
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from odssam.data.image_io import IMAGE_EXTENSIONS, array_to_rgb, is_image_file, read_image, write_png_atomic
from odssam.errors import OdsSamError
from odssam.inference.write_pool import WritePool, default_write_threads
from odssam.utils.atomic import atomic_write, atomic_write_bytes

PROBABILITY_FORMATS = ("png", "npy", "none")
CSV_COLUMNS = ("name", "source", "height", "width", "max_score", "area_fraction")
# Cyan: the complement of the pink/red of tissue, and saturated enough to show on grey metal
# (the figures' red prediction tint and green ground-truth outline do not read on endoscopy).
CONTOUR_COLOR = (0, 255, 255)
OVERLAY_FILL_ALPHA = 0.4
PNG_COMPRESS_LEVEL = 1  # zlib's fastest: outputs are written per image, often by the thousand
_GLOB_CHARACTERS = set("*?[")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputImage:
    """One image file to predict.

    Attributes:
        path: The file.
        name: Unique output name (may hold ``/`` for images found in sub-folders).
    """

    path: Path
    name: str


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        path
        for path in candidates
        if path.is_file() and is_image_file(path) and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _unique(name: str, path: Path, taken: set[str]) -> str:
    if name not in taken:
        return name
    with_suffix = f"{name}_{path.suffix.lstrip('.').lower()}" if path.suffix else name
    candidate, counter = with_suffix, 2
    while candidate in taken:
        candidate = f"{with_suffix}_{counter}"
        counter += 1
    return candidate


def expand_inputs(inputs: Sequence[str | os.PathLike], recursive: bool = False) -> list[InputImage]:
    """Resolve files, folders and glob patterns into a list of images with unique names.

    A file named explicitly is kept whatever its extension (an unreadable one is reported
    when it is read); folders and patterns contribute files with an image extension
    (``.png .jpg .jpeg .bmp .tif .tiff``). The same file listed twice is kept once.

    Args:
        inputs: Paths of files or folders, or glob patterns (``**`` matches sub-folders).
        recursive: Also take images in sub-folders of the given folders.

    Returns:
        The images in the order of ``inputs`` (sorted within each folder or pattern).

    Raises:
        OdsSamError: An input that does not exist or matches nothing, a folder without
            images, or no input at all.
    """
    if not inputs:
        raise OdsSamError("no input given: pass image files, folders or glob patterns")
    found: list[tuple[Path, str]] = []
    problems = []
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.is_file():
            found.append((path, path.stem))
        elif path.is_dir():
            images = _folder_images(path, recursive)
            if not images:
                hint = "" if recursive else " (pass --recursive to search sub-folders)"
                problems.append(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)}){hint}")
            found += [(image, image.relative_to(path).with_suffix("").as_posix()) for image in images]
        elif _GLOB_CHARACTERS & set(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            images = [m for m in matches if m.is_file() and is_image_file(m)]
            if not images:
                problems.append(f"{text}: the pattern matches no image file")
            found += [(image, image.stem) for image in images]
        else:
            problems.append(f"{path}: no such file or folder")
    if problems:
        raise OdsSamError("; ".join(problems))
    seen: set[Path] = set()
    taken: set[str] = set()
    result = []
    for path, name in found:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        name = _unique(name, path, taken)
        taken.add(name)
        result.append(InputImage(path, name))
    return result


def to_rgb(image: Any, where: str = "image") -> np.ndarray:
    """Turn a path, PIL image or array into an HxWx3 uint8 RGB array.

    Arrays may be HxW (grey), HxWx1..4 or 3xHxW, of any integer or float type (16-bit
    scaled to 8-bit, floats in [0, 1] or [0, 255]); alpha is dropped. Torch tensors are
    accepted like arrays.

    Args:
        image: A path (``str`` or ``os.PathLike``), a ``PIL.Image.Image`` or an array.
        where: How to name the image in error messages.

    Raises:
        OdsSamError: An unreadable file, an empty image or an unsupported type or shape.
    """
    if isinstance(image, (str, os.PathLike)):
        return _writable(read_image(image))
    if isinstance(image, Image.Image):
        where = getattr(image, "filename", "") or where
        try:
            array = _pil_array(image)
        except Exception as error:  # noqa: BLE001 - lazily loaded PIL images can fail here
            raise OdsSamError(f"{where}: cannot decode image data ({error})") from error
    elif hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor
        array = image.detach().cpu().numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise OdsSamError(
            f"{where}: expected an image path, a PIL image or an HxW / HxWxC array, got {type(image).__name__}"
        )
    if array.size == 0 or array.ndim < 2:
        raise OdsSamError(f"{where}: empty or not 2-D (shape {tuple(array.shape)})")
    return _writable(array_to_rgb(array, where))


def _writable(array: np.ndarray) -> np.ndarray:
    # Arrays viewing PIL's buffer are read-only, which torch.from_numpy warns about.
    return array if array.flags.writeable else array.copy()


def _pil_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGB", "RGBA", "L", "LA", "I", "I;16", "I;16B", "F"):
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))


# --------------------------------------------------------------------------- writers


def write_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 array (HxW or HxWx3; bool as 0/255) as PNG, atomically, with fast compression."""
    return write_png_atomic(array, path, compress_level=PNG_COMPRESS_LEVEL)


def write_mask_png(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an HxW bool mask as a 0/255 greyscale PNG."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    # One pass (a bool is stored as the byte 0 or 1), where write_png would convert and then scale.
    return write_png(np.multiply(mask.view(np.uint8), np.uint8(255)), path)


def probability_to_uint8(probability: np.ndarray) -> np.ndarray:
    """HxW probabilities in [0, 1] -> HxW uint8 (``round(255 p)``)."""
    scaled = np.multiply(np.asarray(probability, dtype=np.float32), 255.0, dtype=np.float32)
    np.rint(scaled, out=scaled)  # in place: one float32 buffer instead of three
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def write_probability_png(probability: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an HxW probability map as an 8-bit greyscale PNG (value ``round(255 p)``)."""
    return write_png(probability_to_uint8(probability), path)


def write_probability_npy(probability: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an HxW probability map as a float32 ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(probability, dtype=np.float32))
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def mask_contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Pixels of ``mask`` within ``thickness`` steps (8-connected) of a background pixel or the border.

    Args:
        mask: HxW bool.
        thickness: Contour width in pixels.

    Returns:
        HxW bool.
    """
    mask = np.asarray(mask, dtype=bool)
    return mask & ~_erode_square(mask, max(1, thickness))


def _erode_square(mask: np.ndarray, radius: int) -> np.ndarray:
    """HxW bool -> pixels whose (2r+1)x(2r+1) neighbourhood lies inside ``mask`` (outside the image: background).

    ``radius`` 3x3 erosions in a row are one square erosion of side ``2 radius + 1``, and a
    square erosion is a row erosion followed by a column erosion: 2 (2r+1) array ANDs
    instead of 9 r shifted copies.
    """
    height, width = mask.shape
    side = 2 * radius + 1
    padded = np.zeros((height + 2 * radius, width + 2 * radius), dtype=bool)
    padded[radius : radius + height, radius : radius + width] = mask
    rows = padded[:, 0:width].copy()
    for dx in range(1, side):
        rows &= padded[:, dx : dx + width]
    eroded = rows[0:height].copy()
    for dy in range(1, side):
        eroded &= rows[dy : dy + height]
    return eroded


@functools.lru_cache(maxsize=16)
def _fill_table(color: tuple[int, int, int], fill_alpha: float) -> list[int]:
    """The filled value of every 8-bit value of each channel (R, G, B: 3x256 entries, PIL's ``point`` table).

    The arithmetic is that of filling pixel by pixel (float32, rounded to the nearest integer),
    so a lookup gives the same bytes for a fraction of the work.
    """
    values = np.arange(256, dtype=np.float32)[:, None]
    colour = np.array(color, dtype=np.float32)
    table = np.rint((1 - fill_alpha) * values + fill_alpha * colour).astype(np.uint8)  # 256x3
    return table.T.ravel().tolist()


def _overlay_pil(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], thickness: int | None, fill_alpha: float
) -> Image.Image:
    """:func:`overlay_image` as a PIL RGB image (PIL's table lookup and masked paste: one C pass each)."""
    if image.shape[:2] != mask.shape:
        raise ValueError(f"overlay: image {image.shape[:2]} and mask {mask.shape} differ in size")
    if thickness is None:
        thickness = overlay_thickness(mask.shape)
    mask = np.ascontiguousarray(mask, dtype=bool)
    color = tuple(int(channel) for channel in color)
    out = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if fill_alpha > 0 and mask.any():
        out.paste(out.point(_fill_table(color, fill_alpha)), mask=Image.fromarray(mask))
    out.paste(color, mask=Image.fromarray(mask_contour(mask, thickness)))
    return out


def overlay_image(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = CONTOUR_COLOR,
    thickness: int | None = None,
    fill_alpha: float = OVERLAY_FILL_ALPHA,
) -> np.ndarray:
    """Fill ``mask`` on ``image`` with a translucent colour and draw its contour in that colour.

    Pixels outside the mask are left as they are (the contour lies inside the mask). Inside,
    each channel value ``v`` becomes ``round((1 - fill_alpha) v + fill_alpha c)`` (float32).

    Args:
        image: HxWx3 uint8 RGB.
        mask: HxW bool of the same size.
        color: Contour and fill colour (default: cyan).
        thickness: Contour width in pixels (default: :func:`overlay_thickness`).
        fill_alpha: Opacity of the fill inside the mask (0 for the contour only).

    Returns:
        HxWx3 uint8.
    """
    return np.array(_overlay_pil(image, mask, color, thickness, fill_alpha))


def overlay_thickness(size: tuple[int, int]) -> int:
    """Contour width for an image of ``(height, width)``: 2 px up to a 750 px short side, then about 1/300 of it."""
    return max(2, round(min(size) / 300))


def write_overlay_png(
    image: np.ndarray,
    mask: np.ndarray,
    path: str | os.PathLike,
    color: tuple[int, int, int] = CONTOUR_COLOR,
    thickness: int | None = None,
    fill_alpha: float = OVERLAY_FILL_ALPHA,
) -> Path:
    """Write :func:`overlay_image` as an RGB PNG (encoded straight from PIL: no array round trip)."""
    overlay = _overlay_pil(image, mask, color, thickness, fill_alpha)
    return atomic_write(path, lambda stream: overlay.save(stream, format="PNG", compress_level=PNG_COMPRESS_LEVEL))


def write_predictions_csv(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write one row per image with the columns of :data:`CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8"))
    return Path(path)


def read_predictions_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a ``predictions.csv`` as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


class PredictionWriter:
    """Writes the outputs of each prediction in background threads, then the CSV.

    Example::

        with PredictionWriter("out", probability_format="npy") as writer:
            for result in predictor.predict_stream(paths, keep_images=True):
                if result.ok:
                    writer.submit(result.prediction, result.image)
        # out/masks, out/probabilities, out/overlays, out/predictions.csv

    Args:
        output_dir: Output folder (created).
        probability_format: ``png`` (8-bit), ``npy`` (float32) or ``none``.
        masks: Write binary masks.
        overlays: Write overlays (the image must then be given to :meth:`submit`).
        workers: Writer threads (PNG encoding releases the GIL); 0 writes inline. Default:
            one per core, at most 8 (:func:`~odssam.inference.write_pool.default_write_threads`).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        probability_format: str = "png",
        masks: bool = True,
        overlays: bool = True,
        workers: int | None = None,
    ):
        if probability_format not in PROBABILITY_FORMATS:
            raise OdsSamError(
                f"probability format '{probability_format}' is not one of {', '.join(PROBABILITY_FORMATS)}"
            )
        self.output_dir = Path(output_dir)
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OdsSamError(f"{self.output_dir}: cannot create the output folder ({error.strerror})") from error
        self.probability_format = probability_format
        self.masks = masks
        self.overlays = overlays
        self.rows: list[dict[str, Any]] = []
        workers = default_write_threads() if workers is None else workers
        # Up to 4 images queued per thread (~4 MB each at Kvasir sizes): writers never starve.
        self._pool = WritePool(workers, max_pending=max(4, 4 * workers))

    @property
    def csv_path(self) -> Path:
        return self.output_dir / "predictions.csv"

    def paths_for(self, name: str) -> dict[str, Path]:
        """Where the outputs of image ``name`` go (those switched on)."""
        paths = {}
        if self.masks:
            paths["mask"] = self.output_dir / "masks" / f"{name}.png"
        if self.probability_format != "none":
            paths["probability"] = self.output_dir / "probabilities" / f"{name}.{self.probability_format}"
        if self.overlays:
            paths["overlay"] = self.output_dir / "overlays" / f"{name}.png"
        return paths

    def submit(self, prediction, image: np.ndarray | None = None) -> None:
        """Queue the files of one :class:`~odssam.inference.predictor.Prediction`.

        Args:
            prediction: The prediction.
            image: The HxWx3 uint8 image it was made from (needed for overlays).
        """
        if self.overlays and image is None:
            raise ValueError("overlays need the image the prediction was made from")
        height, width = prediction.probability.shape
        self.rows.append(
            {
                "name": prediction.name,
                "source": prediction.source or "",
                "height": height,
                "width": width,
                "max_score": f"{prediction.score:.6f}",
                "area_fraction": f"{prediction.area_fraction:.6f}",
            }
        )
        self._pool.submit(self._write, prediction, image)

    def _write(self, prediction, image: np.ndarray | None) -> None:
        try:
            self._write_files(prediction, image)
        except OSError as error:
            raise OdsSamError(f"{error.filename or self.output_dir}: cannot write ({error.strerror or error})") from error

    def _write_files(self, prediction, image: np.ndarray | None) -> None:
        paths = self.paths_for(prediction.name)
        if "mask" in paths:
            write_mask_png(prediction.mask, paths["mask"])
        if "probability" in paths:
            write = write_probability_png if self.probability_format == "png" else write_probability_npy
            write(prediction.probability, paths["probability"])
        if "overlay" in paths:
            write_overlay_png(image, prediction.mask, paths["overlay"])

    def close(self) -> Path:
        """Wait for every queued file, write ``predictions.csv`` and return its path."""
        self._pool.close()
        return write_predictions_csv(self.rows, self.csv_path)

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self._pool.cancel()
