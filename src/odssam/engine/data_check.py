"""Before a run's first step: every split it will read is built and checked, all problems at once.

A run reads its training split (and validation split) from the first step and its test
split(s) only after the last epoch, so a broken test file used to end a finished run with
no report. :func:`checked_splits` builds every split the run will read (the test sets
only when ``train.final_eval`` is on), runs :func:`odssam.data.header_check.entry_issues`
on each entry (headers and file ends, not pixels) and raises one error listing every
problem found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from odssam.config import ExperimentConfig
from odssam.data.header_check import entry_issues
from odssam.data.index import Issue
from odssam.data.registry import EmptySplitError
from odssam.engine.setup import build_split
from odssam.errors import OdsSamError
from odssam.models.transforms import PreprocessSpec

_READERS = 8  # threads reading headers


def checked_splits(
    cfg: ExperimentConfig, recorded_split, spec: PreprocessSpec, say: Callable[[str], None] = print
) -> tuple[object, object | None]:
    """The training and validation splits, once every split the run reads has passed the check.

    Args:
        cfg: The experiment.
        recorded_split: The run's ``splits/split.json`` when resuming (else ``None``).
        spec: The model's preprocessing (images must fit its input unless
            ``data.image_size`` resizes them to squares first).
        say: Where the one-line summary goes.

    Returns:
        ``(train_set, val_set)``; ``val_set`` is ``None`` with ``data.val_count: 0``.

    Raises:
        OdsSamError: Listing every problem of every split, each with its file.
    """
    dcfg, started = cfg.data, time.perf_counter()
    problems: dict[str, str] = {}  # problem -> the split it was found in first

    def found(label: str, problem) -> None:
        problems.setdefault(str(problem), label)  # a listing's problems come again with each split it holds

    def built(label: str, split: str, category: str | None = None, split_file=None):
        listing: list[Issue] = []
        try:
            dataset = build_split(dcfg, split, split_file, category=category, listing_errors=listing)
        except EmptySplitError as error:
            dataset = None
            if split != "test":  # an empty test set is skipped by the final evaluation
                found(label, error)
        except OdsSamError as error:
            dataset = None
            found(label, error)
        for issue in listing:
            found(label, issue)
        return dataset

    splits = {"train": built("train", "train", split_file=recorded_split)}
    if dcfg.val_count > 0:
        splits["val"] = built("val", "val", split_file=recorded_split)
    if cfg.train.final_eval:
        for name in dcfg.test_sets or [None]:
            label = f"test {name}" if name else "test"
            splits[label] = built(label, "test", name)
    input_spec = spec if dcfg.image_size is None else None
    work = [(label, entry) for label, dataset in splits.items() if dataset is not None for entry in dataset.entries]
    # Threads overlap the file reads (a network or cold disk waits on each header), in order.
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        for (label, _), issues in zip(work, pool.map(lambda item: entry_issues(item[1], item[0], input_spec), work)):
            for issue in issues:
                found(label, issue)
    checked = len(work)
    if problems:
        raise OdsSamError(
            f"the data of this run has {len(problems)} problem(s); nothing was trained:\n  "
            + "\n  ".join(f"{label}: {problem}" for problem, label in problems.items())
            + f"\n(`odssam data check --dataset {dcfg.dataset} --root {dcfg.root}` decodes every file)"
        )
    read = ", ".join(label for label, dataset in splits.items() if dataset is not None)
    say(f"data check: {checked} images of {read} in {time.perf_counter() - started:.1f} s")
    return splits["train"], splits.get("val")
