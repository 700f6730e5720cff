"""Validate a dataset folder: decode everything, summarise each split, list every problem.

What is checked, per file (every message names the file):

- Listing: entries named like images that are not regular files (folders named
  ``*.png``, named pipes, sockets, broken links, link loops) are problems, found with
  ``os.stat`` and never opened; missing or duplicate masks, orphans (see the layouts).
- Decoding: unreadable or truncated images and masks, image/mask size mismatches.
- Mask values: masks that are not binary at the loader's threshold (colour masks, NaN,
  lost foreground, noise, label maps; soft edges are a warning), by the rules of
  :mod:`odssam.data.mask_audit`. JPEG compression noise (Kvasir-SEG) is normal.
- Aspect ratio: SAM's preprocessing scales the longest side to its input size S
  (1024 for the official models), so an image more elongated than 2S:1 would have a
  short side of 0 pixels and stops training and evaluation: a problem. A short side of
  fewer than 16 pixels (one patch of SAM's image encoder) after scaling is a warning.

``odssam train`` runs a quicker form of these checks (headers and file ends, no pixel
decoding: :mod:`odssam.data.header_check`) on every split it will read, before its first step.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from odssam.data.base import load_entry
from odssam.data.index import Entry, IndexOptions, Issue
from odssam.data.mask_audit import MaskFinding
from odssam.data.registry import get_spec, index_dataset
from odssam.errors import OdsSamError
from odssam.models.transforms import longest_side_size

# SAM's input side for the official models, and the patch side of its ViT image encoder.
SAM_IMAGE_SIZE = 1024
SAM_PATCH_SIZE = 16


@dataclass
class SplitStats:
    """What one split holds.

    Attributes:
        count: Images found.
        expected: Images of the full dataset's split under the protocol, if fixed.
        readable: Images whose image and mask decoded without problems.
        height_range: ``(min, max)`` image height over readable images.
        width_range: ``(min, max)`` image width.
        distinct_sizes: Number of different ``(height, width)`` pairs.
        foreground_mean: Mean over images of the mask's foreground fraction.
        foreground_range: ``(min, max)`` foreground fraction.
        empty_masks: Images whose mask has no foreground.
    """

    count: int = 0
    expected: int | None = None
    readable: int = 0
    height_range: tuple[int, int] | None = None
    width_range: tuple[int, int] | None = None
    distinct_sizes: int = 0
    foreground_mean: float | None = None
    foreground_range: tuple[float, float] | None = None
    empty_masks: int = 0


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`."""

    dataset: str
    root: str
    category: str | None
    splits: dict[str, SplitStats] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.level == "warning"]

    @property
    def ok(self) -> bool:
        """No problems (warnings allowed)."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": self.root,
            "category": self.category,
            "ok": self.ok,
            "splits": {key: asdict(stats) for key, stats in self.splits.items()},
            "notes": list(self.notes),
            "problems": [issue.to_dict() for issue in self.problems],
            "warnings": [issue.to_dict() for issue in self.warnings],
        }

    def format_text(self) -> str:
        """A human-readable report."""
        title = get_spec(self.dataset).title
        where = f" [{self.category}]" if self.category else ""
        lines = [f"{title} ({self.dataset}){where} at {self.root}"]
        lines.append(
            f"  {'split':<22} {'images':>6} {'of':>5}  {'height':>11} {'width':>11} {'sizes':>5}  "
            f"{'foreground mean (min..max)':<28} {'empty':>5}"
        )
        for key, stats in self.splits.items():
            expected = "-" if stats.expected is None else str(stats.expected)
            height = _span(stats.height_range)
            width = _span(stats.width_range)
            if stats.foreground_mean is None:
                foreground = "-"
            else:
                low, high = stats.foreground_range
                foreground = f"{stats.foreground_mean:.3f} ({low:.3f}..{high:.3f})"
            lines.append(
                f"  {key:<22} {stats.count:>6} {expected:>5}  {height:>11} {width:>11} "
                f"{stats.distinct_sizes:>5}  {foreground:<28} {stats.empty_masks:>5}"
            )
        for note in self.notes:
            lines.append(f"note: {note}")
        for label, issues in (("warning", self.warnings), ("problem", self.problems)):
            for issue in issues:
                lines.append(f"{label}: {issue}")
        verdict = "OK" if self.ok else "PROBLEMS FOUND"
        lines.append(f"{verdict}: {len(self.problems)} problem(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _span(values: tuple[int, int] | None) -> str:
    if values is None:
        return "-"
    low, high = values
    return str(low) if low == high else f"{low}..{high}"


def _summarise(stats: SplitStats, sizes: list[tuple[int, int]], fractions: list[float]) -> None:
    stats.readable = len(sizes)
    if not sizes:
        return
    heights = [h for h, _ in sizes]
    widths = [w for _, w in sizes]
    stats.height_range = (min(heights), max(heights))
    stats.width_range = (min(widths), max(widths))
    stats.distinct_sizes = len(set(sizes))
    stats.foreground_mean = sum(fractions) / len(fractions)
    stats.foreground_range = (min(fractions), max(fractions))
    stats.empty_masks = sum(1 for fraction in fractions if fraction == 0.0)


def _mask_issues(entry: Entry, findings: list[MaskFinding], split: str) -> list[Issue]:
    return [Issue(finding.level, finding.message, str(entry.mask_path), split) for finding in findings]


def _aspect_issue(entry: Entry, height: int, width: int, sam_image_size: int, split: str) -> Issue | None:
    """A problem if SAM's resize would leave the short side 0 pixels; a warning under one patch."""
    short = min(longest_side_size(height, width, sam_image_size))
    if short >= SAM_PATCH_SIZE:
        return None
    limit = 2 * sam_image_size
    where = (
        f"image is {width}x{height} (WxH, {max(height, width) / max(1, min(height, width)):.0f}:1); SAM's "
        f"preprocessing scales its longest side to {sam_image_size} px, leaving {short} px for the short side"
    )
    if short == 0:
        return Issue(
            "error",
            f"{where}: training and evaluation fail on it. A SAM input of {sam_image_size} px takes aspect "
            f"ratios up to {limit}:1; crop the image, or set data.image_size to resize images to squares",
            str(entry.image_path),
            split,
        )
    return Issue(
        "warning",
        f"{where}, less than one {SAM_PATCH_SIZE}-px patch of SAM's image encoder: little to segment",
        str(entry.image_path),
        split,
    )


def check_dataset(
    name: str,
    root: str | Path,
    category: str | None = None,
    *,
    split_seed: int = 0,
    test_fraction: float = 0.5,
    progress: bool | None = None,
    sam_image_size: int = SAM_IMAGE_SIZE,
) -> CheckReport:
    """Decode every image and mask of a dataset folder and report what it holds.

    MVTec AD without a category checks every category found; PraNet without one checks
    every test set. Defect-free MVTec AD test images are read too (as with
    ``include_good``).

    Args:
        name: Registry name.
        root: Dataset folder.
        category: MVTec AD category, PraNet test set or GlaS part, if any.
        split_seed: Seed of the seeded splits (only changes how images are counted).
        test_fraction: Test fraction of the seeded splits.
        progress: Show a progress bar on stderr (default: when stderr is a terminal).
        sam_image_size: Side of SAM's square input in the model to be trained (1024 for
            the official models; ``configs/tiny.yaml``: 256): sets the aspect-ratio limit.

    Returns:
        The report; ``report.ok`` is False when any problem was found.

    Raises:
        OdsSamError: For an unknown dataset name or category, or a bad ``sam_image_size``.
    """
    if not isinstance(sam_image_size, int) or sam_image_size <= 0:
        raise OdsSamError(f"sam_image_size must be a positive integer, got {sam_image_size!r}")
    options = IndexOptions(
        include_good=True, split_seed=split_seed, test_fraction=test_fraction, every_category=True
    )
    index = index_dataset(name, root, category, options)
    report = CheckReport(
        name, str(index.root), index.category, issues=list(index.issues), notes=list(index.notes)
    )
    total = sum(len(entries) for entries in index.splits.values())
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"checking {name}", unit="img", disable=not progress, file=sys.stderr)
    for key, entries in index.splits.items():
        stats = SplitStats(count=len(entries), expected=index.expected.get(key))
        sizes: list[tuple[int, int]] = []
        fractions: list[float] = []
        for entry in entries:
            findings: list[MaskFinding] = []
            try:
                sample = load_entry(entry, mask_findings=findings)
            except OdsSamError as error:  # load_entry names the file(s) in every message
                report.issues.append(Issue("error", str(error), None, key))
            else:
                report.issues.extend(_mask_issues(entry, findings, key))
                aspect = _aspect_issue(entry, *sample.original_size, sam_image_size, key)
                if aspect is not None:
                    report.issues.append(aspect)
                sizes.append(sample.original_size)
                fractions.append(float(sample.mask.mean()))
            bar.update(1)
        _summarise(stats, sizes, fractions)
        report.splits[key] = stats
    bar.close()
    if total == 0 and not report.problems:
        report.issues.append(Issue("error", "no images found", str(index.root)))
    return report
