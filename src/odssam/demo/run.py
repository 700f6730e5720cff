"""``odssam demo`` end to end: generate data, train briefly, evaluate, draw.

1. Writes a synthetic MVTec-AD-style category (:mod:`odssam.demo.synthetic`).
2. Picks SAM: a checkpoint passed in, else the official ViT-B in the cache, else a
   download of it; if none is available SAM gets random weights and every output says
   the numbers are not meaningful.
3. Trains the prompt encoder (a small configuration, CPU-sized) with the engine's trainer
   under the supervised MVTec AD protocol, on every training image, keeping the last
   epoch (the paper's protocol: no validation hold-out).
4. Predicts the test images with :class:`~odssam.inference.predictor.Predictor` and writes::

       <output>/
           README.md            what ran, the SAM weights used, the scores, what to try next
           report.{md,csv,json} metrics on the test split
           figure_grid.png      image | ground truth | probability | overlay, per test image
           predictions/         masks/, probabilities/, overlays/, predictions.csv
           run/                 the training run (config.yaml, last.pt, metrics.jsonl ...)
           data/                the generated dataset
"""

from __future__ import annotations

import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from odssam.config import ExperimentConfig, from_dict
from odssam.demo.synthetic import generate_dataset
from odssam.engine import train
from odssam.engine.setup import build_split
from odssam.errors import OdsSamError
from odssam.inference.io import PredictionWriter
from odssam.inference.predictor import Predictor
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.figures import save_figure_grid
from odssam.metrics.report import format_table, write_report
from odssam.utils.atomic import atomic_write_text
from odssam.utils.device import resolve_device

DEFAULT_OUTPUT = "odssam-demo"
CATEGORY = "fabric"
DEMO_METRICS = ("mae", "emeasure", "dice", "iou", "auroc", "aupro")
GRID_ROWS = 6
OFFICIAL_VARIANT = "vit_b"  # the only official SAM small enough for a CPU demo


@dataclass
class DemoOptions:
    """Settings of :func:`run_demo` (the ``odssam demo`` flags).

    Attributes:
        output: Output folder (default: ``odssam-demo``, or ``odssam-demo-2`` ... if taken).
        per_defect: Generated abnormal images per defect type, about half train and half
            test (default 8; 5 with official SAM weights on a CPU, whose encoder is slow there).
        good: Generated defect-free images per split (MVTec layout; not used in training).
        image_size: Side of the generated images.
        epochs: Training epochs (default: 30 with random SAM weights, 12 with official ones).
        max_steps: Stop training after this many optimizer steps.
        batch_size: Training batch size.
        sam_checkpoint: A SAM checkpoint file to use (its variant and input size are read from it).
        download: Download the official ViT-B checkpoint when it is not in the cache.
        random_sam: Use random SAM weights even if a checkpoint is available.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: Seed of the data and the training.
        progress: Show progress bars.
    """

    output: str | Path | None = None
    per_defect: int | None = None
    good: int = 2
    image_size: int = 256
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int = 4
    sam_checkpoint: str | None = None
    download: bool = True
    random_sam: bool = False
    device: str = "auto"
    seed: int = 0
    progress: bool = True


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes:
        output: The output folder.
        checkpoint: The trained checkpoint (``run/last.pt``).
        metrics: Metric key -> value on the test split.
        random_sam: Whether SAM had random weights (scores then mean nothing).
        sam_weights: Description of the SAM weights used.
        seconds: Wall time of the whole demo.
        files: Main files written.
    """

    output: Path
    checkpoint: Path
    metrics: dict[str, float]
    random_sam: bool
    sam_weights: str
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


def _say(message: str = "") -> None:
    print(message, flush=True)


def choose_output_dir(requested: str | Path | None) -> Path:
    """The requested folder (refused if it already holds a demo run), else a fresh ``odssam-demo[-N]``."""
    if requested is not None:
        path = Path(requested)
        if (path / "run" / "last.pt").exists():
            raise OdsSamError(f"{path} already holds a demo run (run/last.pt): choose another --output folder")
        return path
    counter = 1
    while True:
        path = Path(DEFAULT_OUTPUT if counter == 1 else f"{DEFAULT_OUTPUT}-{counter}")
        if not path.exists():
            return path
        counter += 1


@dataclass(frozen=True)
class SamChoice:
    """SAM weights for the demo: ``checkpoint`` ``None`` means random weights."""

    variant: str
    image_size: int
    checkpoint: str | None
    description: str
    why_random: str = ""


def choose_sam(options: DemoOptions) -> SamChoice:
    """A given checkpoint, else the cached official ViT-B, else a download, else random weights."""
    from odssam.models.checkpoints import cached_checkpoint, download_checkpoint
    from odssam.models.sam import describe_sam_state_dict, find_sam_variant, read_sam_state_dict

    random_choice = SamChoice("vit_micro", 256, None, "RANDOM weights (vit_micro at 256 px)")
    if options.random_sam:
        return SamChoice(**{**random_choice.__dict__, "why_random": "--random-sam was given"})
    if options.sam_checkpoint:
        path = Path(options.sam_checkpoint)
        description = describe_sam_state_dict(read_sam_state_dict(path))
        variant = find_sam_variant(description[0]) if description else None
        if variant is None:
            raise OdsSamError(f"{path}: not a SAM checkpoint of a known variant (vit_h, vit_l, vit_b, ...)")
        return SamChoice(variant, description[1], str(path.resolve()), f"{path} ({variant})")
    cached = cached_checkpoint(OFFICIAL_VARIANT)
    if cached is not None:
        return SamChoice(OFFICIAL_VARIANT, 1024, str(cached), f"official {OFFICIAL_VARIANT} ({cached})")
    if not options.download:
        why = f"no official {OFFICIAL_VARIANT} checkpoint in the cache and downloading is off (--no-download)"
        return SamChoice(**{**random_choice.__dict__, "why_random": why})
    _say(f"no official SAM {OFFICIAL_VARIANT} checkpoint in the cache: downloading it (375 MB) ...")
    try:
        path = download_checkpoint(OFFICIAL_VARIANT, progress=options.progress)
    except OdsSamError as error:
        first_sentence = str(error).split(". ")[0]  # the rest advises flags of other commands
        why = f"no official {OFFICIAL_VARIANT} checkpoint in the cache and the download failed ({first_sentence})"
        return SamChoice(**{**random_choice.__dict__, "why_random": why})
    return SamChoice(OFFICIAL_VARIANT, 1024, str(path), f"official {OFFICIAL_VARIANT} ({path})")


def random_weights_banner(reason: str) -> str:
    """The loud notice printed (and written to the README) when SAM has random weights."""
    lines = textwrap.wrap(
        f"WARNING: SAM RUNS WITH RANDOM WEIGHTS: {reason}. The demo runs end to end, but its scores "
        f"and masks are NOT meaningful. For real results fetch the official weights "
        f"('odssam weights download {OFFICIAL_VARIANT}') and run the demo again, or pass --sam-checkpoint PATH.",
        width=74,
    )
    bar = "!" * 80
    return "\n".join([bar, *[f"!!  {line}" for line in lines], bar])


def demo_config(options: DemoOptions, sam: SamChoice, data_root: Path, output: Path) -> ExperimentConfig:
    """The experiment: a CPU-sized prompt encoder on the chosen SAM (cf. ``configs/tiny.yaml``)."""
    official = sam.checkpoint is not None
    epochs = options.epochs if options.epochs is not None else (12 if official else 30)
    return from_dict(
        ExperimentConfig,
        {
            "name": "demo",
            "model": {
                "sam": {"variant": sam.variant, "checkpoint": sam.checkpoint, "image_size": sam.image_size},
                "prompt_encoder": {
                    "input_size": 128 if official else 64,
                    "feature_encoder": {"backbone": "efficientvit_tiny", "neck_blocks": 1},
                    "ssm": {"scan_backend": "auto", "chunk_size": 16, "d_state": 4, "dt_rank": 4, "expand": 1},
                    "odconv": {"kernel_num": 4},
                },
            },
            "data": {
                "dataset": "mvtec",
                "root": str(data_root),
                "category": CATEGORY,
                "val_count": 0,
                "split_seed": options.seed,
                "num_workers": 0,
            },
            "train": {
                "epochs": epochs,
                "max_steps": options.max_steps,
                "batch_size": options.batch_size,
                "lr": 1e-3,
                "precision": "auto",
                "seed": options.seed,
                "metrics": ["dice", "iou", "mae"],
                "monitor": "dice@0.5",
                "final_eval": False,
                "output_dir": str(output),
                "run_name": "run",
                "cache_dir": str(output / ".embedding-cache"),
            },
        },
    )


def run_demo(options: DemoOptions | None = None) -> DemoResult:
    """Run the whole demo; see the module docstring for what it writes.

    Raises:
        OdsSamError: Bad options, an output folder that already holds a demo run, or a
            SAM checkpoint that cannot be read.
    """
    options = options or DemoOptions()
    if options.per_defect is not None and options.per_defect < 2:
        raise OdsSamError(f"per_defect must be at least 2 (half of them train, half test), got {options.per_defect}")
    start = time.perf_counter()
    on_gpu = resolve_device(options.device).type == "cuda"
    output = choose_output_dir(options.output)
    output.mkdir(parents=True, exist_ok=True)
    _say(f"odssam demo: writing to {output.resolve()}")

    sam = choose_sam(options)
    if sam.checkpoint is None:
        print(random_weights_banner(sam.why_random), file=sys.stderr, flush=True)
    _say(f"SAM: {sam.description}")

    per_defect = options.per_defect or (5 if sam.checkpoint is not None and not on_gpu else 8)
    dataset = generate_dataset(
        output / "data", CATEGORY, per_defect=per_defect, good=options.good,
        image_size=options.image_size, seed=options.seed,
    )
    abnormal = per_defect * len(dataset.defects)
    _say(f"data: {abnormal} synthetic defect images ({', '.join(dataset.defects)}) in {dataset.category_dir}")

    # Absolute: the checkpoint stores the config, and eval/predict may run from another folder.
    cfg = demo_config(options, sam, dataset.root.resolve(), output)
    phase_start = time.perf_counter()
    result = train(cfg, run_dir=output / "run", device=options.device, progress=options.progress)
    train_seconds = time.perf_counter() - phase_start
    checkpoint = result.checkpoint

    phase_start = time.perf_counter()
    predictor = Predictor.from_checkpoint(checkpoint, options.device, batch_size=options.batch_size)
    test_set = build_split(cfg.data, "test", result.run_dir / "splits" / "split.json")
    samples = [test_set[index] for index in range(len(test_set))]
    metrics, probabilities = _evaluate(predictor, samples, output / "predictions")
    title = f"ODS-SAM demo: synthetic '{CATEGORY}' test split, {len(samples)} images"
    if sam.checkpoint is None:
        title += " (RANDOM SAM weights: not meaningful)"
    report = write_report([metrics], output, "report", layout="rows", title=title)

    grid = _draw_grid(output / "figure_grid.png", samples, probabilities)
    seconds = time.perf_counter() - start
    _say(f"training {train_seconds:.0f} s, evaluation and figures {time.perf_counter() - phase_start:.0f} s")
    table = format_table([metrics], layout="rows", legend=False)
    readme = _readme(output, sam, cfg, checkpoint, table, seconds)
    atomic_write_text(output / "README.md", readme)

    _say("")
    _say(table)
    if sam.checkpoint is None:
        print(random_weights_banner(sam.why_random), file=sys.stderr, flush=True)
    _say(f"demo finished in {seconds:.0f} s. Everything is in {output}/ (start with {output / 'README.md'})")
    _say(f"predict your own images:  odssam predict --checkpoint {checkpoint} YOUR_FOLDER --output predictions")
    return DemoResult(
        output=output,
        checkpoint=checkpoint,
        metrics=dict(metrics.values),
        random_sam=sam.checkpoint is None,
        sam_weights=sam.description,
        seconds=seconds,
        files={
            "readme": output / "README.md",
            "report": report["md"],
            "figure_grid": grid,
            "predictions": output / "predictions" / "predictions.csv",
            "checkpoint": checkpoint,
        },
    )


def _evaluate(predictor, samples, prediction_dir: Path):
    """Predict the test samples, write their outputs, score them: ``(MetricResult, probabilities)``."""
    evaluator = Evaluator(metrics=DEMO_METRICS, name=CATEGORY)
    probabilities = []
    with PredictionWriter(prediction_dir, workers=0) as writer:
        predictions = predictor.predict_batch([s.image for s in samples], names=[s.name for s in samples])
        for sample, prediction in zip(samples, predictions):
            prediction.source = sample.path
            evaluator.update(prediction.probability, sample.mask)
            writer.submit(prediction, sample.image)
            probabilities.append(prediction.probability)
    return evaluator.compute(), probabilities


def _draw_grid(path: Path, samples, probabilities) -> Path:
    rows = _grid_rows(samples)
    return save_figure_grid(
        path,
        [samples[i].image for i in rows],
        [samples[i].mask for i in rows],
        {"ODS-SAM": [probabilities[i] for i in rows]},
        row_labels=[samples[i].name for i in rows],
    )


def _grid_rows(samples) -> list[int]:
    """Up to :data:`GRID_ROWS` test images, covering every defect type first."""
    by_defect: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        by_defect.setdefault(sample.name.rsplit("_", 1)[0], []).append(index)
    rows: list[int] = []
    while len(rows) < min(GRID_ROWS, len(samples)):
        for indices in by_defect.values():
            if indices and len(rows) < GRID_ROWS:
                rows.append(indices.pop(0))
    return rows


def _readme(output: Path, sam: SamChoice, cfg: ExperimentConfig, checkpoint: Path, table: str, seconds: float) -> str:
    warning = ""
    if sam.checkpoint is None:
        warning = "\n```\n" + random_weights_banner(sam.why_random) + "\n```\n"
    return f"""# odssam demo
{warning}
- SAM: {sam.description}
- Data: synthetic MVTec-AD-style category `{CATEGORY}` in `data/` (scratches, blobs, cracks on a
  textured surface); supervised protocol: half of each defect type's images train, half test.
- Training: {cfg.train.epochs} epochs (max steps {cfg.train.max_steps}), batch {cfg.train.batch_size},
  a CPU-sized prompt encoder; the run folder is `run/` (checkpoint `{checkpoint.relative_to(output)}`).
- Finished in {seconds:.0f} s.

## Scores on the test split

{table}

Files: `report.md` / `report.csv` / `report.json` (scores), `figure_grid.png` (image, ground
truth, probability, overlay), `predictions/` (masks, probability maps, overlays, predictions.csv).

## Next

    odssam predict --checkpoint {checkpoint} YOUR_IMAGES/ --output predictions
    odssam export --checkpoint {checkpoint} --output exported
"""
