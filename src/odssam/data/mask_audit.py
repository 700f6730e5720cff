"""Is a mask file binary at the loader's threshold? What ``odssam data check`` flags.

The loaders binarise a mask with :func:`odssam.data.image_io.read_mask`: the values
are reduced to one channel (colour: luma) and compared with a threshold (8-bit: > 127;
0/1 masks: > 0; float: > 0.5; 16-bit: > 32767 unless the values stay within 0..255).
Masks that are not two clean levels on either side of that threshold are silently
turned into something else, so this module looks at the values before thresholding.

Rules for lossless files (PNG, BMP, TIFF), with F the full scale (1 for float masks
within 0..1, 255 for 8-bit values, 65535 for wider ones); values above F/4 are
"raised", values between F/4 and 3F/4 "intermediate"; a value "covers" the mask when
at least 0.5 % of the pixels hold it. Checked in this order, the first error is reported:

errors
    - Colour masks whose channels disagree by more than F/4 on 0.5 % of the pixels or
      more: the loader thresholds their luma, so pure red (luma 76) reads as background
      (fewer such pixels: a warning).
    - NaN or infinite values (float TIFF): they read as background.
    - Lost foreground: at least 4 non-zero pixels but none above the threshold (a 0/1
      mask in 16 bits, 0/100, a 0..5 label map, float 0/0.3): the mask reads as empty.
    - Noise: more than 10 % of the pixels intermediate (noise, a photograph, a
      probability map).
    - Label maps: two or more raised values cover the mask (0/100/255, 0/128/255).
      Near-background levels are not flagged: CVC-ClinicDB's masks have a dark-grey
      (value 11) fringe that reads as background, as it should.

warnings
    - Soft edges: 1-10 % of the pixels intermediate (antialiased or resized masks).
    - Palette masks with more than two colours covering the mask: every non-zero palette
      index is foreground.

JPEG masks (Kvasir-SEG) carry compression noise around 0 and 255 by nature; for them
only lost foreground (nothing above 127 but at least 4 pixels above 2) and noise (more
than 25 % of the pixels between 48 and 207) are errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from odssam.data.image_io import MaskValues, _channels_last, mask_gray, mask_threshold

# A value covering at least this fraction of the pixels is one of the mask's levels.
LEVEL_FRACTION = 0.005
# Values within BAND x full scale of 0 or of the full scale are near-background /
# near-foreground; pixels in between are intermediate: a few are soft edges (warning),
# more than NOISE_FRACTION is noise (error).
BAND = 0.25
SOFT_EDGE_FRACTION = 0.01
NOISE_FRACTION = 0.10
# Fewest non-zero pixels that make a mask with nothing above its threshold an error.
LOST_FOREGROUND_PIXELS = 4
# Channels further apart than this fraction of the full scale disagree (a colour pixel).
COLOUR_SPREAD = 0.25
# JPEG: values within this distance of 0 or 255 are compression noise; above JPEG_FLOOR
# a pixel of a mask without foreground is not background; noise above JPEG_NOISE_FRACTION.
JPEG_TOLERANCE = 48
JPEG_FLOOR = 2
JPEG_NOISE_FRACTION = 0.25


@dataclass(frozen=True)
class MaskFinding:
    """One remark about a mask file's values.

    Attributes:
        level: ``error`` (training would see a wrong mask) or ``warning``.
        message: What is wrong, without the file name (the caller adds it).
    """

    level: str
    message: str


def audit_mask(mask: MaskValues) -> list[MaskFinding]:
    """What is wrong with a mask's values at the loader's threshold (see the module docstring).

    Args:
        mask: The decoded values and binarisation rule, from
            :func:`odssam.data.image_io.read_mask_values`.

    Returns:
        Findings, errors first; at most one error (the most specific).
    """
    values = mask.values
    if values.dtype == np.bool_ or values.size == 0:
        return []
    if mask.rule == "nonzero":
        return _audit_palette(values)
    if mask.rule == "lossy":
        return _audit_jpeg(mask_gray(values))
    findings: list[MaskFinding] = []
    colour = _audit_colour(values)
    if colour is not None:
        findings.append(colour)
        if colour.level == "error":
            return findings
    gray = mask_gray(values)
    threshold = mask_threshold(gray)
    if np.issubdtype(gray.dtype, np.floating):
        finite = np.isfinite(gray)
        bad = int(gray.size - np.count_nonzero(finite))
        if bad:
            return [MaskFinding("error", f"{bad} NaN or infinite values (they read as background)")]
    findings.extend(_audit_levels(gray, threshold))
    findings.sort(key=lambda finding: finding.level != "error")
    return findings


def _full_scale(values: np.ndarray) -> float:
    if np.issubdtype(values.dtype, np.floating):
        return 255.0 if np.nanmax(values, initial=0.0) > 1.0 else 1.0
    return 255.0 if int(values.max(initial=0)) <= 255 else 65535.0


def _audit_colour(values: np.ndarray) -> MaskFinding | None:
    array = _channels_last(values)
    if array.ndim != 3 or array.shape[-1] < 3:
        return None
    rgb = array[..., :3].astype(np.float32)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    disagree = spread > COLOUR_SPREAD * _full_scale(values)
    count = int(np.count_nonzero(disagree))
    if count == 0:
        return None
    example = tuple(int(v) for v in rgb[disagree][0])
    message = (
        f"colour mask: the channels disagree on {count} pixels (e.g. RGB {example}); the loader "
        f"thresholds their luma, which reads pure red (luma 76) as background; save a "
        f"single-channel 0/255 mask"
    )
    level = "error" if count >= _level_pixels(spread.size) else "warning"
    return MaskFinding(level, message)


def _level_pixels(total: int) -> int:
    return max(1, math.ceil(LEVEL_FRACTION * total))


def _histogram(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of ``gray`` and their pixel counts (NaN/inf left out)."""
    if gray.dtype == np.uint8:
        counts = np.bincount(gray.ravel(), minlength=256)
        levels = np.flatnonzero(counts)
        return levels, counts[levels]
    flat = gray.ravel()
    if np.issubdtype(flat.dtype, np.floating):
        flat = flat[np.isfinite(flat)]
    return np.unique(flat, return_counts=True)


def _show(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def _audit_levels(gray: np.ndarray, threshold: float) -> list[MaskFinding]:
    levels, counts = _histogram(gray)
    total = int(counts.sum())
    if total == 0:
        return []
    scale = _full_scale(gray)
    rule = f"the loader reads values > {_show(threshold)} as foreground"
    top = levels[-1]
    lifted = int(counts[levels > 0].sum())
    if 0 < top <= threshold and lifted >= min(LOST_FOREGROUND_PIXELS, total):
        main = levels[counts >= _level_pixels(total)]
        what = f"label map ({_list(main)})" if len(main) >= 3 else f"values up to {_show(top)}"
        return [
            MaskFinding(
                "error",
                f"foreground lost: {lifted} non-zero pixels but none above the threshold ({what}; "
                f"{rule}), so the mask reads as empty; a 0/1 or 0/100 mask saved with a wider "
                f"range, or a label map? Save the foreground as {_show(scale)}",
            )
        ]
    middle = (levels > BAND * scale) & (levels < (1 - BAND) * scale)
    middle_fraction = counts[middle].sum() / total
    if middle_fraction > NOISE_FRACTION:
        return [
            MaskFinding(
                "error",
                f"not a binary mask: {len(levels)} distinct values, {middle_fraction:.0%} of the pixels "
                f"between {_show(BAND * scale)} and {_show((1 - BAND) * scale)} (noise, a photograph, a "
                f"probability map?); {rule}",
            )
        ]
    raised = levels[(counts >= _level_pixels(total)) & (levels > BAND * scale)]
    if len(raised) >= 2:
        return [
            MaskFinding(
                "error",
                f"label map, not a binary mask: {len(raised)} values above {_show(BAND * scale)} cover "
                f"0.5 % of the pixels or more each ({_list(raised)}); {rule}; save the mask as two "
                f"values (0 and {_show(scale)})",
            )
        ]
    if middle_fraction > SOFT_EDGE_FRACTION:
        return [
            MaskFinding(
                "warning",
                f"soft edges: {middle_fraction:.1%} of the pixels are between {_show(BAND * scale)} and "
                f"{_show((1 - BAND) * scale)}; {rule}",
            )
        ]
    return []


def _list(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(_show(v) for v in values[:limit])
    return shown + (" ..." if len(values) > limit else "")


def _audit_jpeg(gray: np.ndarray) -> list[MaskFinding]:
    top = int(gray.max(initial=0))
    lifted = int(np.count_nonzero(gray > JPEG_FLOOR))
    if top <= 127 and lifted >= min(LOST_FOREGROUND_PIXELS, gray.size):
        return [
            MaskFinding(
                "error",
                f"foreground lost: {lifted} pixels above {JPEG_FLOOR} but none above the loader's threshold "
                f"127 (values up to {top}), so the mask reads as empty; a 0/1 or 0/100 mask, a label "
                f"map or a coloured mask? Save the foreground as 255",
            )
        ]
    middle = (gray > JPEG_TOLERANCE) & (gray < 255 - JPEG_TOLERANCE)
    middle_fraction = np.count_nonzero(middle) / gray.size
    if middle_fraction > JPEG_NOISE_FRACTION:
        return [
            MaskFinding(
                "error",
                f"not a binary mask: {middle_fraction:.0%} of the pixels lie between {JPEG_TOLERANCE} and "
                f"{255 - JPEG_TOLERANCE}, far more than JPEG compression noise (noise, a photograph?); "
                f"the loader reads values > 127 as foreground",
            )
        ]
    return []


def _audit_palette(indices: np.ndarray) -> list[MaskFinding]:
    levels, counts = _histogram(indices)
    main = levels[counts >= _level_pixels(int(counts.sum()))]
    if len(main) <= 2:
        return []
    return [
        MaskFinding(
            "warning",
            f"palette mask with {len(main)} colours covering 0.5 % of the pixels or more: every "
            f"non-zero palette index is read as foreground",
        )
    ]
