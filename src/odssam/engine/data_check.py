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

from odssam.config import ExperimentConfig
from odssam.data.header_check import entry_issues
from odssam.data.registry import EmptySplitError
from odssam.engine.setup import build_split
from odssam.errors import OdsSamError
from odssam.models.transforms import PreprocessSpec


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
    problems: list[str] = []

    def built(split: str, category: str | None = None, split_file=None):
        try:
            return build_split(dcfg, split, split_file, category=category)
        except EmptySplitError as error:
            if split != "test":  # an empty test set is skipped by the final evaluation
                problems.append(str(error))
        except OdsSamError as error:
            problems.append(str(error))
        return None

    splits = {"train": built("train", split_file=recorded_split)}
    if dcfg.val_count > 0:
        splits["val"] = built("val", split_file=recorded_split)
    if cfg.train.final_eval:
        for name in dcfg.test_sets or [None]:
            splits[f"test {name}" if name else "test"] = built("test", name)
    input_spec = spec if dcfg.image_size is None else None
    checked = 0
    for label, dataset in splits.items():
        for entry in dataset.entries if dataset is not None else []:
            problems += [f"{label}: {issue}" for issue in entry_issues(entry, label, input_spec)]
            checked += 1
    problems = list(dict.fromkeys(problems))  # the train and val splits share a listing's problems
    if problems:
        raise OdsSamError(
            f"the data of this run has {len(problems)} problem(s); nothing was trained:\n  "
            + "\n  ".join(problems)
            + f"\n(`odssam data check --dataset {dcfg.dataset} --root {dcfg.root}` decodes every file)"
        )
    say(f"data check: {checked} images of {', '.join(splits)} in {time.perf_counter() - started:.1f} s")
    return splits["train"], splits.get("val")
