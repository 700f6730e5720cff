"""Cases: each generator of :mod:`bad_inputs` fed to the commands that read such an input.

A :class:`World` holds what every case starts from (a small folder dataset, a tiny
checkpoint, its reference prediction, the tiny config). Each entry of :data:`GENERATORS`
makes one :class:`~runner.Case` from a seeded generator in a fresh folder; the CI test
draws a few of each, ``fuzz.py`` thousands.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from helpers import TINY_CONFIG, save_image, save_tiny_checkpoint

import bad_inputs as bad
from runner import Case

MISSING_ROOT = "/nonexistent-odssam-data"
ODD_IMAGE_KINDS = {name for name, _, _ in bad.IMAGE_MODES}
# Keeps a training case to one optimizer step (no final evaluation, no validation).
SHORT_TRAIN = ["--set", "train.max_steps=1", "--set", "train.epochs=1", "--set", "train.final_eval=false",
               "--no-progress"]


@dataclass
class World:
    """Shared, never-modified inputs of every case (made once per session by :func:`make_world`)."""

    root: Path
    dataset: Path
    checkpoint: Path
    checkpoint_bytes: bytes
    payload: dict
    image: Path
    reference: np.ndarray  # predict's float32 probabilities of ``image`` with ``checkpoint``
    config: dict
    pred_dir: Path
    gt_dir: Path


def make_world(root: Path) -> World:
    """Generate the shared inputs under ``root`` (a few seconds: one prediction runs)."""
    import torch

    from runner import OK, run_case

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    dataset = bad.write_folder_dataset(root / "dataset", rng)
    checkpoint = save_tiny_checkpoint(root / "tiny.pt", perturbation=0.05)
    image = save_image(bad.random_rgb(rng, *bad.SHAPE), root / "image.png")
    pred_dir, gt_dir = root / "pred", root / "gt"
    for index in range(3):
        pred = rng.integers(0, 256, bad.SHAPE, dtype=np.uint8)
        save_image(pred, pred_dir / f"good{index}.png")
        save_image(pred > 127, gt_dir / f"good{index}.png")
    world = World(root, dataset, checkpoint, checkpoint.read_bytes(),
                  torch.load(checkpoint, map_location="cpu", weights_only=True), image, np.zeros(0),
                  yaml.safe_load(TINY_CONFIG.read_text()), pred_dir, gt_dir)
    case = predict_case(world, root / "reference", image, "reference", expect="ok")
    outcome = run_case(case)
    assert outcome.category == OK, outcome
    world.reference = np.load(root / "reference" / "out" / "probabilities" / "image.npy")
    return world


# --------------------------------------------------------------------------- output checks


def predictions_check(out: Path, expected: np.ndarray | None = None) -> Callable[[], str | None]:
    """After ``predict`` exit 0: a row and a finite map per image (equal to ``expected`` if given)."""

    def check() -> str | None:
        csv = out / "predictions.csv"
        if not csv.is_file():
            return "exit 0 but no predictions.csv"
        rows = csv.read_text().splitlines()[1:]
        if not rows:
            return "exit 0 but predictions.csv is empty"
        for row in rows:
            name, *_, max_score, area = row.split(",")
            if not (math.isfinite(float(max_score)) and math.isfinite(float(area))):
                return f"non-finite score in predictions.csv: {row}"
            maps = out / "probabilities" / f"{name}.npy"
            if not maps.is_file():
                return f"exit 0 but {maps.name} missing"
            probability = np.load(maps)
            if not np.isfinite(probability).all():
                return f"{maps.name} holds NaN"
            if expected is not None and not np.array_equal(probability, expected):
                return "silently different result: the damaged checkpoint loaded and predicted other values"
        return None

    return check


def report_check(path: Path) -> Callable[[], str | None]:
    """After ``eval``/``metrics`` exit 0: the JSON report exists, every value finite."""

    def check() -> str | None:
        if not path.is_file():
            return f"exit 0 but {path.name} missing"
        text = path.read_text()
        if "NaN" in text or "Infinity" in text:
            return f"{path.name} holds NaN/inf"
        results = json.loads(text)["results"]
        if not results or any(result["n_images"] < 1 for result in results):
            return f"{path.name}: no image scored"
        return None

    return check


def file_check(*paths: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = [path.name for path in paths if not path.is_file()]
        return f"exit 0 but {', '.join(missing)} missing" if missing else None

    return check


# --------------------------------------------------------------------------- images


def predict_case(world: World, folder: Path, image: Path, kind: str, expect: str, names=()) -> Case:
    out = folder / "out"
    argv = ["predict", "--checkpoint", str(world.checkpoint), str(image), "--output", str(out), "--device", "cpu",
            "--probability-format", "npy", "--no-overlay", "--no-progress", "--num-workers", "0"]
    return Case("predict", kind, argv, expect, names or (image.name,), predictions_check(out))


def _image_input(rng: np.random.Generator) -> tuple[str, str, bytes, str]:
    """``(kind, file name, bytes, expect)`` of a damaged, odd or extreme image."""
    choice = int(rng.integers(3))
    if choice == 0:
        kind, name, data = bad.damaged_image(rng)
        detectable = kind.startswith(("truncated", "zero", "text", "flipped_png"))
        expect = "ok" if kind == "wrong_extension" else ("error" if detectable else "either")
        return f"image:{kind}", name, data, expect
    if choice == 1:
        kind, name, data = bad.odd_image(rng)
        return f"image:{kind}", name, data, "ok"
    kind, name, data = bad.extreme_image(rng)
    return f"image:{kind}", name, data, "ok" if kind == "extreme_1x1" else "either"


def image_for_predict(world: World, rng: np.random.Generator, folder: Path) -> Case:
    kind, name, data, expect = _image_input(rng)
    if rng.random() < 0.15:
        kind, path = f"image:{bad.special_entry(folder / 'in' / name, rng)}", folder / "in" / name
        expect = "error"
    else:
        path = bad.write_content(folder / "in" / name, data)
    return predict_case(world, folder, path, kind, expect)


def image_for_forward(world: World, rng: np.random.Generator, folder: Path) -> Case:
    kind, name, data, expect = _image_input(rng)
    path = bad.write_content(folder / name, data)
    argv = ["forward", "--config", str(TINY_CONFIG), "--image", str(path), "--device", "cpu"]
    return Case("forward", kind, argv, expect, (name,))


def _metrics_folders(world: World, folder: Path) -> tuple[Path, Path]:
    pred_dir, gt_dir = folder / "pred", folder / "gt"
    shutil.copytree(world.pred_dir, pred_dir)
    shutil.copytree(world.gt_dir, gt_dir)
    return pred_dir, gt_dir


def metrics_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    """One bad prediction map or ground-truth mask among good pairs: listed (exit 1), the rest scored."""
    pred_dir, gt_dir = _metrics_folders(world, folder)
    choice = int(rng.integers(3))
    if choice == 0:
        kind, name, data = bad.damaged_image(rng)
        bad.write_content(pred_dir / name, data)
        save_image(np.zeros(bad.SHAPE, bool), gt_dir / (Path(name).stem + ".png"))
        expect = "ok" if kind == "wrong_extension" else "either"
    elif choice == 1:
        kind, name, content = bad.odd_mask(rng)
        bad.write_content(gt_dir / name, content)
        save_image(rng.integers(0, 256, bad.SHAPE, dtype=np.uint8), pred_dir / (Path(name).stem + ".png"))
        expect = "ok" if kind in ("empty", "full") else "either"
    else:
        name = "special.png"
        kind = bad.special_entry(pred_dir / name, rng)
        save_image(np.zeros(bad.SHAPE, bool), gt_dir / name)
        expect = "either"
    out = folder / "report"
    argv = ["metrics", "--pred", str(pred_dir), "--gt", str(gt_dir), "--quiet", "--output", str(out),
            "--dataset", "fuzz"]
    return Case("metrics", f"metrics:{kind}", argv, expect, (name, Path(name).stem), report_check(out / "fuzz.json"))


# --------------------------------------------------------------------------- dataset folders


def _broken_dataset(world: World, rng: np.random.Generator, folder: Path) -> tuple[Path, str, str, str]:
    root = folder / "dataset"
    shutil.copytree(world.dataset, root, symlinks=True)
    kind, name = bad.break_dataset(root, rng)
    detail = kind.split("_", 1)[1] if "_" in kind else kind
    odd_mask = kind.startswith("mask_") and detail in ("zero_hundred", "zero_one", "label_map", "colour", "noise",
                                                        "empty", "full")
    odd_image = kind.startswith("image_") and (detail in ODD_IMAGE_KINDS or detail.startswith("extreme"))
    undetectable = kind in ("image_flipped_jpeg", "image_flipped_tiff", "image_flipped_bmp", "folder_loop")
    expect = "either" if odd_mask or odd_image or undetectable else "error"
    return root, f"dataset:{kind}", name, expect


def data_check_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    root, kind, name, expect = _broken_dataset(world, rng, folder)
    argv = ["data", "check", "--dataset", "folder", "--root", str(root), "--no-progress"]
    return Case("data check", kind, argv, expect, (name,))


def train_dataset_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    root, kind, name, expect = _broken_dataset(world, rng, folder)
    if name.startswith("test"):
        expect = "either"  # without the final evaluation, training never reads the test split
    runs = folder / "runs"
    argv = ["train", "--config", str(TINY_CONFIG), "--set", f"data.root={root}", "--set", f"train.output_dir={runs}",
            "--set", f"train.cache_dir={folder / 'cache'}", "--device", "cpu", *SHORT_TRAIN]
    return Case("train", kind, argv, expect, (name,), file_check(runs / "tiny" / "last.pt"))


def eval_dataset_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    root, kind, name, expect = _broken_dataset(world, rng, folder)
    out = folder / "report"
    argv = ["eval", "--checkpoint", str(world.checkpoint), "--dataset", "folder", "--root", str(root), "--split",
            "test", "--device", "cpu", "--output", str(out), "--no-progress"]
    if not name.startswith("test"):
        expect = "either"  # the damage may be in the train split, which eval --split test does not read
    return Case("eval", kind, argv, expect, (name,), report_check(out / "report.json"))


# --------------------------------------------------------------------------- configs


def config_file_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    kind, text, key = bad.mutated_config(world.config, rng)
    path = folder / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("latin-1", errors="replace") if kind == "malformed_flip" else text.encode())
    runs = folder / "runs"
    argv = ["train", "--config", str(path), "--set", f"data.root={MISSING_ROOT}",
            "--set", f"train.output_dir={runs}", "--device", "cpu", "--no-progress"]
    # A mutation may happen to be valid; then the missing data root is the error to name.
    names = (str(path), MISSING_ROOT, key)
    return Case("train", f"config:{kind}", argv, "error", names)


def override_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    kind, item, key = bad.bad_override(rng)
    command = ("train", "forward")[int(rng.integers(2))]
    argv = [command, "--config", str(TINY_CONFIG), "--set", item, "--device", "cpu"]
    if command == "train":
        argv += ["--set", f"data.root={MISSING_ROOT}", "--set", f"train.output_dir={folder / 'runs'}", "--no-progress"]
    expect = "either" if command == "forward" and kind == "bad_value" else "error"
    return Case(command, f"override:{kind}", argv, expect, (key, item, MISSING_ROOT))


# --------------------------------------------------------------------------- checkpoints


def _bad_checkpoint(world: World, rng: np.random.Generator, path: Path) -> tuple[str, str]:
    """Write a damaged checkpoint at ``path``: ``(kind, expect)``."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if rng.random() < 0.6:
        kind, data = bad.damaged_checkpoint(world.checkpoint_bytes, rng)
        path.write_bytes(data)
        return f"checkpoint:{kind}", "either" if kind == "bit_flips" else "error"
    kind, payload = bad.odd_payload(world.payload, rng)
    torch.save(payload, path)
    return f"checkpoint:{kind}", "error"


def checkpoint_for_predict(world: World, rng: np.random.Generator, folder: Path) -> Case:
    path = folder / "last.pt"
    kind, expect = _bad_checkpoint(world, rng, path)
    case = predict_case(world, folder, world.image, kind, expect, names=(path.name,))
    case.argv[case.argv.index("--checkpoint") + 1] = str(path)
    # A flip that torch ignores (zip padding, names) may load: the result must then be the reference.
    case.check = predictions_check(folder / "out", world.reference)
    return case


def checkpoint_for_eval(world: World, rng: np.random.Generator, folder: Path) -> Case:
    path = folder / "last.pt"
    kind, expect = _bad_checkpoint(world, rng, path)
    out = folder / "report"
    argv = ["eval", "--checkpoint", str(path), "--dataset", "folder", "--root", str(world.dataset), "--device", "cpu",
            "--output", str(out), "--no-progress"]
    return Case("eval", kind, argv, expect, (path.name,), report_check(out / "report.json"))


def checkpoint_for_export(world: World, rng: np.random.Generator, folder: Path) -> Case:
    path = folder / "last.pt"
    kind, expect = _bad_checkpoint(world, rng, path)
    out = folder / "export"
    argv = ["export", "--checkpoint", str(path), "--output", str(out), "--no-check"]
    return Case("export", kind, argv, expect, (path.name,), file_check(out / "odssam_onnx.json"))


def checkpoint_for_resume(world: World, rng: np.random.Generator, folder: Path) -> Case:
    run_dir = folder / "run"
    kind, expect = _bad_checkpoint(world, rng, run_dir / "last.pt")
    argv = ["train", "--resume", str(run_dir), "--set", f"data.root={world.dataset}", "--device", "cpu", *SHORT_TRAIN]
    return Case("train", kind, argv, expect, ("last.pt",), file_check(run_dir / "last.pt"))


def checkpoint_for_weights(world: World, rng: np.random.Generator, folder: Path) -> Case:
    """``weights verify`` of a file that is no SAM checkpoint (damaged or odd): always refused."""
    path = folder / "sam_vit_b_01ec64.pth" if rng.random() < 0.3 else folder / "weights.pth"
    kind, _ = _bad_checkpoint(world, rng, path)
    argv = ["weights", "verify", str(path)]
    if rng.random() < 0.3:
        digest = ("sha256:xyz", "md5", "crc32:00", "sha256:" + "0" * 64, ":")[int(rng.integers(5))]
        argv += ["--digest", digest]
        kind = "weights:bad_digest"
    return Case("weights verify", kind, argv, "error", (path.name, "--digest", "digest"))


# --------------------------------------------------------------------------- output folders and demo


def output_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    kind, out, cleanup = bad.unwritable_output(folder / "outputs", rng)
    command = ("predict", "metrics", "eval", "export", "train")[int(rng.integers(5))]
    names = (str(out), str(out.parent))
    if command == "predict":
        case = predict_case(world, folder, world.image, f"output:{kind}", "error", names=names)
        case.argv[case.argv.index("--output") + 1] = str(out)
        case.cleanup = cleanup
        return case
    argv = {
        "metrics": ["metrics", "--pred", str(world.pred_dir), "--gt", str(world.gt_dir), "--quiet",
                    "--output", str(out)],
        "eval": ["eval", "--checkpoint", str(world.checkpoint), "--dataset", "folder", "--root", str(world.dataset),
                 "--device", "cpu", "--output", str(out), "--no-progress"],
        "export": ["export", "--checkpoint", str(world.checkpoint), "--output", str(out), "--no-check"],
        "train": ["train", "--config", str(TINY_CONFIG), "--set", f"data.root={world.dataset}", "--run-dir", str(out),
                  "--set", f"train.cache_dir={folder / 'cache'}", "--device", "cpu", *SHORT_TRAIN],
    }[command]
    return Case(command, f"output:{kind}", argv, "error", names, cleanup=cleanup)


def demo_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    """``demo`` with an out-of-range option (refused before any work starts)."""
    flag, value = [("--image-size", "8"), ("--epochs", "0"), ("--batch-size", "-1"), ("--max-steps", "0"),
                   ("--images-per-defect", "1"), ("--image-size", "abc"), ("--epochs", "1e9")][int(rng.integers(7))]
    argv = ["demo", "--random-sam", "--no-download", "--device", "cpu", "--output", str(folder / "demo"), flag, value]
    return Case("demo", f"demo:{flag}={value}", argv, "error", (flag,))


def weights_download_case(world: World, rng: np.random.Generator, folder: Path) -> Case:
    """``weights download`` from an address that refuses connections, or with a malformed digest."""
    from helpers import free_port

    argv = ["weights", "download", "vit_b", "--dir", str(folder / "cache"), "--no-progress",
            "--url", f"http://127.0.0.1:{free_port()}/sam_vit_b_01ec64.pth"]
    if rng.random() < 0.5:
        argv += ["--digest", ("sha256:zz", "sha1:00", "nonsense")[int(rng.integers(3))]]
        return Case("weights download", "weights:bad_digest", argv, "error", ("digest",))
    return Case("weights download", "weights:unreachable_url", argv, "error", ("127.0.0.1", "download"))


# Generator name -> (factory, relative cost: 1 is a few tenths of a second in-process).
GENERATORS: dict[str, tuple[Callable[[World, np.random.Generator, Path], Case], float]] = {
    "predict_image": (image_for_predict, 1),
    "forward_image": (image_for_forward, 2),
    "metrics": (metrics_case, 0.3),
    "data_check": (data_check_case, 0.2),
    "train_dataset": (train_dataset_case, 15),
    "eval_dataset": (eval_dataset_case, 2),
    "config_file": (config_file_case, 0.3),
    "override": (override_case, 0.5),
    "predict_checkpoint": (checkpoint_for_predict, 1),
    "eval_checkpoint": (checkpoint_for_eval, 2),
    "export_checkpoint": (checkpoint_for_export, 20),
    "resume_checkpoint": (checkpoint_for_resume, 10),
    "weights_verify": (checkpoint_for_weights, 0.3),
    "weights_download": (weights_download_case, 0.3),
    "output_folder": (output_case, 5),
    "demo": (demo_case, 0.2),
}
