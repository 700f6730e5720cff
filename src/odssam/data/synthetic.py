"""Generated textured surfaces with drawn defects and their exact masks (NumPy and Pillow only).

Textures (``fabric``, ``wood``, ``metal``) are built from sinusoids and smoothed noise;
defects are drawn on them with their exact masks:

* ``scratch``: a thin, slightly curved bright or dark line;
* ``blob``: an irregular stain (an ellipse with a wobbly outline), darker and tinted;
* ``crack``: a dark random walk with a side branch.

The demo's dataset (:mod:`odssam.demo.synthetic`) and the export's tracing and parity
images (:func:`odssam.export.onnx_export.example_images`) are drawn here. The same
generator state gives the same image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from odssam.errors import OdsSamError

TEXTURES = ("fabric", "wood", "metal")
DEFECTS = ("scratch", "blob", "crack")


# --------------------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Noise in [-1, 1] varying over about ``cells`` cells across the image (bicubic upsampling)."""
    grid = rng.uniform(-1, 1, (max(2, cells * height // max(height, width)), max(2, cells * width // max(height, width))))
    image = Image.fromarray(grid.astype(np.float32)).resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image), -1.5, 1.5)


def _texture(rng: np.random.Generator, name: str, height: int, width: int) -> np.ndarray:
    """HxWx3 float texture in 0..255."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    scale = max(height, width) / 256.0
    fine = rng.normal(0, 1, (height, width)).astype(np.float32)
    if name == "fabric":
        period = rng.uniform(5, 8) * scale
        weave = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)
        grey = 150 + 18 * weave + 10 * _smooth_noise(rng, height, width, 6) + 5 * fine
        tint = np.array([1.0, 0.93, 0.82]) * rng.uniform(0.9, 1.1)
    elif name == "wood":
        warp = 12 * scale * _smooth_noise(rng, height, width, 4)
        rings = np.sin(2 * np.pi * (xx + warp) / (rng.uniform(14, 22) * scale))
        grey = 135 + 25 * rings + 12 * _smooth_noise(rng, height, width, 10) + 4 * fine
        tint = np.array([1.15, 0.85, 0.55])
    elif name == "metal":
        # Brushed metal: noise averaged along the rows, plus a slow gradient.
        length = max(3, round(24 * scale))
        summed = np.cumsum(np.pad(fine, ((0, 0), (length, 0))), axis=1)
        streaks = (summed[:, length:] - summed[:, :-length]) / math.sqrt(length)
        gradient = rng.uniform(-30, 30) * (yy / height - 0.5)
        grey = 160 + gradient + 6 * streaks + 6 * _smooth_noise(rng, height, width, 3)
        tint = np.array([0.97, 1.0, 1.04])
    else:
        raise OdsSamError(f"unknown texture '{name}'; choose one of {', '.join(TEXTURES)}")
    return np.clip(grey[:, :, None] * tint[None, None, :], 0, 255)


# --------------------------------------------------------------------------- defects


def _scratch(rng: np.random.Generator, height: int, width: int, draw: ImageDraw.ImageDraw) -> float:
    size = min(height, width)
    start = np.array([rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height])
    angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.6) * size
    bend = rng.uniform(-0.6, 0.6)
    points = []
    for t in np.linspace(0, 1, 12):
        heading = angle + bend * t
        points.append(tuple(start + t * length * np.array([math.cos(heading), math.sin(heading)])))
    draw.line(points, fill=255, width=max(2, round(size / 90)), joint="curve")
    return rng.choice([-1.0, 1.0]) * rng.uniform(60, 90)


def _blob(rng: np.random.Generator, height: int, width: int, draw: ImageDraw.ImageDraw) -> float:
    size = min(height, width)
    cy, cx = rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width
    radius = rng.uniform(0.06, 0.14) * size
    aspect, tilt = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
    phases, amplitudes = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.05, 0.2, 3)
    points = []
    for theta in np.linspace(0, 2 * np.pi, 48, endpoint=False):
        r = radius * (1 + sum(a * math.sin(k * theta + p) for k, (a, p) in enumerate(zip(amplitudes, phases), 2)))
        x, y = r * math.cos(theta), aspect * r * math.sin(theta)
        points.append((cx + x * math.cos(tilt) - y * math.sin(tilt), cy + x * math.sin(tilt) + y * math.cos(tilt)))
    draw.polygon(points, fill=255)
    return -rng.uniform(55, 80)


def _crack(rng: np.random.Generator, height: int, width: int, draw: ImageDraw.ImageDraw) -> float:
    size = min(height, width)
    step = size / 40
    width_px = max(2, round(size / 110))

    def walk(start: np.ndarray, heading: float, steps: int) -> list[tuple[float, float]]:
        point, points = start.copy(), [tuple(start)]
        for _ in range(steps):
            heading += rng.normal(0, 0.45)
            point = point + step * np.array([math.cos(heading), math.sin(heading)])
            point = np.clip(point, 0, [width - 1, height - 1])
            points.append(tuple(point))
        return points

    start = np.array([rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height])
    heading = rng.uniform(0, 2 * np.pi)
    trunk = walk(start, heading, int(rng.integers(12, 20)))
    draw.line(trunk, fill=255, width=width_px, joint="curve")
    fork = np.array(trunk[len(trunk) // 2])
    draw.line(walk(fork, heading + rng.choice([-1, 1]) * 0.9, int(rng.integers(5, 9))), fill=255, width=width_px)
    return -rng.uniform(70, 100)


_DRAWERS = {"scratch": _scratch, "blob": _blob, "crack": _crack}


def render_surface(
    rng: np.random.Generator,
    height: int = 256,
    width: int = 256,
    texture: str | None = None,
    defect: str | None = "random",
) -> tuple[np.ndarray, np.ndarray, str]:
    """Draw one textured surface, with or without a defect.

    Args:
        rng: Source of randomness.
        height: Image rows.
        width: Image columns.
        texture: One of :data:`TEXTURES` (random if ``None``).
        defect: One of :data:`DEFECTS`, ``"random"``, or ``None`` for a defect-free image.

    Returns:
        ``(image, mask, defect)``: HxWx3 uint8 RGB, HxW bool (empty without a defect) and
        the defect name (``"good"`` without one).
    """
    texture = texture or str(rng.choice(TEXTURES))
    image = _texture(rng, texture, height, width)
    mask = np.zeros((height, width), dtype=bool)
    if defect is None:
        return image.round().astype(np.uint8), mask, "good"
    if defect == "random":
        defect = str(rng.choice(DEFECTS))
    if defect not in _DRAWERS:
        raise OdsSamError(f"unknown defect '{defect}'; choose one of {', '.join(DEFECTS)}")
    canvas = Image.new("L", (width, height), 0)
    shift = _DRAWERS[defect](rng, height, width, ImageDraw.Draw(canvas))
    # A slightly soft edge looks like a real defect; the mask is where the change is strong.
    soft = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32) / 255.0
    mask = soft > 0.5
    colour = np.array([1.0, 0.9, 0.8]) if defect == "blob" else np.ones(3)
    image = image + soft[:, :, None] * shift * colour[None, None, :]
    return np.clip(image, 0, 255).round().astype(np.uint8), mask, defect
