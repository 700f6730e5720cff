"""Pieces of the training setup kept out of the loop: config checks, data splits, the monitored metric."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from odssam.config import DataConfig, ExperimentConfig
from odssam.errors import OdsSamError

LR_SCHEDULES = ("constant", "cosine")


def check_train_config(cfg: ExperimentConfig, world_size: int = 1) -> None:
    """Reject training settings that need facts of this run, before anything expensive happens.

    Every value and every rule between fields was checked when ``cfg`` was built
    (:func:`odssam.config.from_dict`); what is left depends on the run: the number of
    processes, whether a dataset folder was given, and the metrics' keys.
    """
    tcfg = cfg.train
    problems = []
    if tcfg.batch_size % world_size:
        problems.append(
            f"train.batch_size {tcfg.batch_size} is the global batch and must divide evenly over "
            f"{world_size} processes"
        )
    if not cfg.data.root:
        problems.append("data.root is empty: point it at the dataset folder (--set data.root=PATH)")
    if problems:
        raise OdsSamError("bad training config: " + "; ".join(problems))
    monitor_direction(tcfg)


def monitor_direction(tcfg) -> bool:
    """Whether a larger ``train.monitor`` is better; checks that the metrics produce that key."""
    from odssam.metrics.evaluator import Evaluator
    from odssam.metrics.result import metric_spec

    keys = Evaluator(metrics=tcfg.metrics).compute().values
    if tcfg.monitor not in keys:
        raise OdsSamError(
            f"train.monitor '{tcfg.monitor}' is not among the computed metrics "
            f"({', '.join(keys)}); change train.monitor or add its metric to train.metrics"
        )
    return metric_spec(tcfg.monitor).higher_is_better


def build_split(
    dcfg: DataConfig, split: str, split_file: str | Path | None = None, category: str | None = None, **options
):
    """The dataset of one split as ``data`` configures it.

    Args:
        dcfg: The data section of the experiment.
        split: ``train``, ``val`` or ``test``.
        split_file: A split record written by an earlier run (``splits/split.json``): a
            resumed run then sees exactly the same samples, e.g. MVTec AD's seeded split.
        category: Overrides ``data.category`` (a PraNet test set, an MVTec AD category).
        options: More arguments of :func:`odssam.data.build_dataset` (``skip_missing``,
            ``listing_errors``).
    """
    from odssam.data import build_dataset

    return build_dataset(
        dcfg.dataset,
        dcfg.root,
        split,
        category=category if category is not None else dcfg.category,
        image_size=dcfg.image_size,
        include_good=dcfg.include_good,
        split_seed=dcfg.split_seed,
        test_fraction=dcfg.test_fraction,
        val_count=dcfg.val_count,
        split_file=split_file,
        **options,
    )


def test_splits(dcfg: DataConfig, say: Callable = print) -> Iterator[tuple[str, object]]:
    """``(name, dataset)`` for each test set of the final evaluation.

    ``data.test_sets`` lists them (e.g. the five PraNet polyp sets); otherwise it is the
    test split of ``data.dataset`` / ``data.category``. A test set that cannot be read is
    reported and skipped, so a finished training run still writes its report.
    """
    names = list(dcfg.test_sets) or [None]
    for name in names:
        label = name or dcfg.category or dcfg.dataset
        try:
            dataset = build_split(dcfg, "test", category=name)
        except OdsSamError as error:
            say(f"skipping test set '{label}': {error}")
            continue
        if len(dataset) == 0:
            say(f"skipping test set '{label}': it has no images")
            continue
        yield label, dataset
