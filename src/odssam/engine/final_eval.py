"""After training: which checkpoint is the final model, and its evaluation on the test split(s).

The last epoch's weights are in memory (and in ``last.pt``); with validation the final
model is ``best.pt`` (``last.pt`` only if no epoch got a finite validation score).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from odssam.checkpoint import load_checkpoint
from odssam.engine.evaluate import SkippedSample, evaluate_dataset, write_skipped
from odssam.engine.logging import write_json_atomic
from odssam.engine.run_setup import RunContext
from odssam.engine.setup import test_splits
from odssam.metrics.result import MetricResult


@dataclass(frozen=True)
class FinalModel:
    """The final model's checkpoint, its epoch, and whether validation selected it (``best.pt``)."""

    path: Path
    epoch: int
    selected_on_validation: bool


def load_final_model(ctx: RunContext, validating: bool, trainable: torch.nn.Module, completed_epochs: int) -> FinalModel:
    """Load ``best.pt``'s weights into ``trainable`` when validation selected one (every rank)."""
    best_path = ctx.folder.best
    if not (validating and best_path.exists()):
        return FinalModel(ctx.folder.last, completed_epochs, selected_on_validation=False)
    best = load_checkpoint(best_path)  # every rank, so all end with the same weights
    trainable.load_state_dict(best["prompt_encoder"])
    return FinalModel(best_path, best["epoch"], selected_on_validation=True)


def evaluate_final_model(
    ctx: RunContext, model: torch.nn.Module, final: FinalModel
) -> tuple[list[MetricResult], list[SkippedSample]]:
    """Score ``model`` on every test set (rank 0), write ``report.{json,csv,md}``; the results and the skipped samples.

    Test images are decoded here for the first time in a run (the check before training
    reads their headers only). A test sample that has become unreadable since is skipped,
    said, and listed in ``report.md`` and ``report-skipped.json``; the others are scored.
    """
    cfg, tcfg, dcfg = ctx.cfg, ctx.cfg.train, ctx.cfg.data
    results: list[MetricResult] = []
    skipped: list[SkippedSample] = []
    for name, dataset in test_splits(dcfg, ctx.say):
        if dcfg.test_sets:
            write_json_atomic(ctx.folder.path / "splits" / f"test-{name}.json", dataset.split_record())
        result, _ = evaluate_dataset(
            model, dataset, name=name, metrics=tcfg.metrics, batch_size=ctx.per_rank_batch,
            num_workers=dcfg.num_workers, amp_dtype=ctx.amp_dtype, progress=ctx.progress, skipped=skipped,
        )
        results.append(result)
    if results:
        from odssam.metrics.report import format_table, write_report

        chosen = f"best val {tcfg.monitor}" if final.selected_on_validation else "last epoch"
        title = f"{cfg.name}: {final.path.name} (epoch {final.epoch}, {chosen}) on the test split" + (
            "s" if len(results) > 1 else ""
        )
        write_report(results, ctx.folder.path, "report", title=title)
        write_skipped(skipped, ctx.folder.path)
        ctx.say(format_table(results, legend=False))
    for sample in skipped:
        ctx.say(str(sample))
    return results, skipped
