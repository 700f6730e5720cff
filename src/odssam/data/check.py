"""Validate a dataset folder: decode everything, summarise each split, list every problem."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from odssam.data.base import load_entry
from odssam.data.index import IndexOptions, Issue
from odssam.data.registry import get_spec, index_dataset
from odssam.errors import OdsSamError


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


def check_dataset(
    name: str,
    root: str | Path,
    category: str | None = None,
    *,
    split_seed: int = 0,
    test_fraction: float = 0.5,
    progress: bool | None = None,
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

    Returns:
        The report; ``report.ok`` is False when any problem was found.

    Raises:
        OdsSamError: For an unknown dataset name or category.
    """
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
            try:
                sample = load_entry(entry)
            except OdsSamError as error:
                report.issues.append(Issue("error", str(error), None, key))
            except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the check
                message = f"cannot read ({type(error).__name__}: {error})"
                report.issues.append(Issue("error", message, str(entry.image_path), key))
            else:
                sizes.append(sample.original_size)
                fractions.append(float(sample.mask.mean()))
            bar.update(1)
        _summarise(stats, sizes, fractions)
        report.splits[key] = stats
    bar.close()
    if total == 0 and not report.problems:
        report.issues.append(Issue("error", "no images found", str(index.root)))
    return report
