"""Qualitative figure grids like the paper's Figures 3-4.

One row per sample; columns: the image, its ground truth, each method's prediction (grey
levels = probability) and optionally an overlay of one method's prediction on the image
(prediction ``> threshold`` tinted red, ground-truth outline in green). A legend strip under
the grid holds the grey scale as a colour bar and the overlay's two colours. Drawn with PIL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from odssam.metrics.inputs import as_mask, as_probability, to_numpy
from odssam.utils.atomic import atomic_write

_BACKGROUND = (255, 255, 255)
_TEXT = (0, 0, 0)
_PRED_TINT = np.array([230.0, 40.0, 40.0])
_GT_OUTLINE = np.array([40, 220, 60], dtype=np.uint8)
_PAD = 4


def _as_rgb(image: Any) -> np.ndarray:
    """HxWx3 uint8 from an RGB/grey uint8 array or a float array in [0, 1] (CHW tensors too)."""
    array = to_numpy(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"image must be HxW, HxWx3 or 3xHxW, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return array


def _fit_size(height: int, width: int, cell: int) -> tuple[int, int]:
    scale = cell / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` 4-connected steps of its outside."""
    interior = mask
    for _ in range(width):
        interior = _erode(interior)
    return mask & ~interior


def _overlay(rgb: np.ndarray, prob: np.ndarray, gt: np.ndarray, threshold: float) -> np.ndarray:
    out = rgb.astype(np.float64)
    predicted = prob > threshold
    out[predicted] = 0.5 * out[predicted] + 0.5 * _PRED_TINT
    out = out.astype(np.uint8)
    out[_outline(gt)] = _GT_OUTLINE
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def figure_grid(
    images: Sequence[Any],
    gts: Sequence[Any],
    predictions: Mapping[str, Sequence[Any]],
    *,
    overlay: str | None = "last",
    threshold: float = 0.5,
    cell_size: int = 192,
    row_labels: Sequence[str] | None = None,
    legend: bool = True,
) -> Image.Image:
    """Compose the figure grid.

    Args:
        images: Per sample an ``HxWx3`` uint8 image (grey, float in [0, 1] or ``3xHxW``
            tensors are accepted too).
        gts: Per sample an ``HxW`` ground-truth mask.
        predictions: Method name -> per sample an ``HxW`` probability map in [0, 1]
            (or a binary mask), at the image's size.
        overlay: Method whose prediction is overlaid on the image in a last column:
            a method name, ``"first"``, ``"last"`` (default; put your own method last, as
            the paper does) or ``None`` for no overlay column.
        threshold: Binarisation threshold of the overlay.
        cell_size: Longest side of each cell in pixels (aspect ratio kept).
        row_labels: Optional text per row, drawn left of the row.
        legend: Add the legend strip under the grid (colour bar of the probability
            columns; with an overlay column, what its red and green mean).

    Returns:
        The grid as an RGB PIL image.

    Raises:
        ValueError: On mismatched sample counts or sizes, or an unknown overlay method.
    """
    methods = list(predictions)
    n_samples = len(images)
    if len(gts) != n_samples or any(len(predictions[m]) != n_samples for m in methods):
        raise ValueError("images, ground truths and every method's predictions need the same number of samples")
    if n_samples == 0:
        raise ValueError("no samples to draw")
    if row_labels is not None and len(row_labels) != n_samples:
        raise ValueError("row_labels needs one label per sample")
    overlay_method = {"first": methods[0] if methods else None, "last": methods[-1] if methods else None}.get(
        overlay, overlay
    )
    if overlay_method is not None and overlay_method not in predictions:
        raise ValueError(f"overlay method {overlay_method!r} is not among {methods}")
    titles = ["Image", "GT"] + methods + ([f"Overlay ({overlay_method})"] if overlay_method else [])

    font = _font(max(10, cell_size // 14))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_height = max(measure.textbbox((0, 0), t, font=font)[3] for t in titles) + 2 * _PAD
    label_width = 0
    if row_labels:
        label_width = max(measure.textbbox((0, 0), str(t), font=font)[2] for t in row_labels) + 2 * _PAD
    step = cell_size + _PAD
    grid_width, grid_height = label_width + len(titles) * step + _PAD, text_height + n_samples * step + _PAD
    legend_items, legend_height = [], 0
    if legend:
        legend_items, legend_height = _layout_legend(
            _legend_items(overlay_method, threshold), grid_width, text_height, font
        )
    canvas = Image.new("RGB", (grid_width, grid_height + legend_height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles):
        width = draw.textbbox((0, 0), title, font=font)[2]
        x = label_width + _PAD + column * step + (cell_size - width) // 2
        draw.text((max(x, 0), _PAD), title, fill=_TEXT, font=font)

    for row in range(n_samples):
        rgb = _as_rgb(images[row])
        gt = as_mask(gts[row])
        maps = {m: as_probability(predictions[m][row]) for m in methods}
        for label, array in [("ground truth", gt)] + [(f"prediction of {m}", a) for m, a in maps.items()]:
            if array.shape != rgb.shape[:2]:
                raise ValueError(f"sample {row}: {label} is {array.shape[0]}x{array.shape[1]}, "
                                 f"image is {rgb.shape[0]}x{rgb.shape[1]}")
        size = _fit_size(rgb.shape[0], rgb.shape[1], cell_size)
        small_rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        small_gt = np.asarray(Image.fromarray(gt).resize(size, Image.NEAREST))
        cells = [small_rgb, np.where(small_gt[..., None], 255, 0).astype(np.uint8).repeat(3, axis=-1)]
        small_maps = {}
        for method, prob in maps.items():
            grey = Image.fromarray(np.rint(prob * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
            small_maps[method] = np.asarray(grey) / 255.0
            cells.append(np.stack([np.asarray(grey)] * 3, axis=-1))
        if overlay_method:
            cells.append(_overlay(small_rgb, small_maps[overlay_method], small_gt, threshold))
        top = text_height + row * step
        if row_labels:
            draw.text((_PAD, top + cell_size // 2), str(row_labels[row]), fill=_TEXT, font=font)
        for column, cell in enumerate(cells):
            left = label_width + _PAD + column * step
            offset = ((cell_size - cell.shape[1]) // 2, (cell_size - cell.shape[0]) // 2)
            canvas.paste(Image.fromarray(cell), (left + offset[0], top + offset[1]))
    if legend:
        _draw_legend(canvas, grid_height, text_height, font, legend_items)
    return canvas


_LegendItem = tuple[str, Any, str]  # ("bar", None, "") or ("swatch", rgb, label)


def _legend_items(overlay_method: str | None, threshold: float) -> list[_LegendItem]:
    items: list[_LegendItem] = [("bar", None, "")]
    if overlay_method is not None:
        items.append(("swatch", tuple(int(v) for v in _PRED_TINT), f"{overlay_method} > {threshold:g}"))
        items.append(("swatch", tuple(int(v) for v in _GT_OUTLINE), "ground truth outline"))
    return items


def _layout_legend(
    items: list[_LegendItem], width: int, text_height: int, font: ImageFont.ImageFont
) -> tuple[list[tuple[_LegendItem, int, int]], int]:
    """Place the legend items left to right, wrapping at ``width``; ``(placed, height)``."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    bar_width = _legend_bar_width(width)

    def item_width(item: _LegendItem) -> int:
        if item[0] == "bar":
            labels = sum(measure.textbbox((0, 0), text, font=font)[2] for text in ("probability 0", "1"))
            return labels + bar_width + 3 * _PAD
        return text_height + _PAD + measure.textbbox((0, 0), item[2], font=font)[2]

    placed, x, line = [], _PAD, 0
    for item in items:
        size = item_width(item)
        if x > _PAD and x + size > width - _PAD:
            x, line = _PAD, line + 1
        placed.append((item, x, line))
        x += size + 4 * _PAD
    line_height = text_height + _PAD
    return placed, (line + 1) * line_height + text_height // 2


def _legend_bar_width(width: int) -> int:
    return max(32, min(width // 3, 256))


def _draw_legend(
    canvas: Image.Image, top: int, text_height: int, font: ImageFont.ImageFont, placed: list
) -> None:
    """Colour bar of the probability columns (black 0 to white 1) and the overlay colours."""
    draw = ImageDraw.Draw(canvas)
    bar_width = _legend_bar_width(canvas.width)
    for (kind, colour, label), x, line in placed:
        y = top + text_height // 2 + line * (text_height + _PAD)
        if kind == "bar":
            draw.text((x, y), "probability 0", fill=_TEXT, font=font)
            x += draw.textbbox((0, 0), "probability 0", font=font)[2] + _PAD
            ramp = np.linspace(0, 255, bar_width).round().astype(np.uint8)
            bar = np.repeat(ramp[None, :, None], text_height, axis=0).repeat(3, axis=-1)
            canvas.paste(Image.fromarray(bar), (x, y))
            draw.rectangle((x - 1, y - 1, x + bar_width, y + text_height), outline=_TEXT)
            draw.text((x + bar_width + _PAD, y), "1", fill=_TEXT, font=font)
        else:
            draw.rectangle((x, y, x + text_height, y + text_height), fill=colour, outline=_TEXT)
            draw.text((x + text_height + _PAD, y), label, fill=_TEXT, font=font)


def save_figure_grid(path: str | os.PathLike, *args: Any, **kwargs: Any) -> Path:
    """Compose :func:`figure_grid` (same arguments) and write it as PNG atomically.

    Returns:
        The written path.
    """
    grid = figure_grid(*args, **kwargs)
    return atomic_write(Path(path), lambda file: grid.save(file, format="PNG"))
