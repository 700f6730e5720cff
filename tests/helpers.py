"""Helpers shared by tests of several subpackages: the tiny model, generated images, files.

Importable as ``helpers`` from every test module and conftest (and from processes the
tests spawn), because pytest puts this folder on ``sys.path`` for ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from odssam.config import ExperimentConfig, ModelConfig, load_config, to_dict
from odssam.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, save_checkpoint
from odssam.models.ods_sam import build_ods_sam

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"


# Triton's interpreter before 3.7 turns a scalar into a loop bound with int() on a 1-element
# 1-d array, which NumPy 2.5 refuses ("only 0-dimensional arrays can be converted to Python
# scalars"); Triton 3.7 squeezes the array first, and so does this patch on older ones.
_INTERPRETER_NUMPY_PATCH = """
import triton.runtime.interpreter as _interpreter
if hasattr(_interpreter, "_patch_lang_tensor"):
    _patch_lang_tensor = _interpreter._patch_lang_tensor

    def _patch_with_squeezed_index(tensor, scope):
        _patch_lang_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    _interpreter._patch_lang_tensor = _patch_with_squeezed_index
"""


def run_in_triton_interpreter(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh Python with ``TRITON_INTERPRET=1`` (Triton reads it at import).

    The package source and this folder are on its path; a failure shows the script's stderr.
    """
    path = os.pathsep.join([str(REPO_ROOT / "src"), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    script = _INTERPRETER_NUMPY_PATCH + script
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# --------------------------------------------------------------------------- tiny model


def tiny_model_config() -> ModelConfig:
    """The model section of configs/tiny.yaml."""
    return load_config(TINY_CONFIG).model


def checkpoint_payload(model: torch.nn.Module, cfg: ExperimentConfig, **fields: Any) -> dict[str, Any]:
    """A training checkpoint's dict for ``model`` (epoch 0, no best metric unless ``fields`` say)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": to_dict(cfg),
        "prompt_encoder": model.prompt_encoder.state_dict(),
        "sam_fingerprint": model.frozen_fingerprint(),
        "epoch": 0,
        "step": 0,
        "best_metric": None,
    }
    payload.update(fields)
    return payload


def save_tiny_checkpoint(path: Path, perturbation: float = 0.0) -> Path:
    """configs/tiny.yaml's model saved as a training checkpoint.

    Args:
        path: The checkpoint file.
        perturbation: Scale of seeded noise added to the prompt encoder's weights (0: as
            initialised; more gives larger logits than at init).
    """
    cfg = ExperimentConfig(model=tiny_model_config())
    model = build_ods_sam(cfg.model)
    if perturbation:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in model.prompt_encoder.parameters():
                parameter.add_(perturbation * torch.randn(parameter.shape, generator=generator))
    return save_checkpoint(path, checkpoint_payload(model, cfg))


# --------------------------------------------------------------------------- generated images


def random_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """HxWx3 uint8 noise."""
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def random_ellipse(
    shape: tuple[int, int],
    rng: np.random.Generator,
    centre: tuple[float, float],
    radius: tuple[float, float],
) -> np.ndarray:
    """HxW bool ellipse; centre and radii drawn uniformly in ``centre`` / ``radius`` times the size.

    Draws, in order: centre row, centre column, row radius, column radius.
    """
    height, width = shape
    yy, xx = np.mgrid[:height, :width]
    cy, cx = rng.uniform(*centre) * height, rng.uniform(*centre) * width
    ry, rx = rng.uniform(*radius) * height, rng.uniform(*radius) * width
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


# --------------------------------------------------------------------------- files


def save_image(array: np.ndarray, path: Path, **kwargs: Any) -> Path:
    """Write ``array`` with PIL (bool as 0/255), creating the folder; ``kwargs`` go to ``save``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path, **kwargs)
    return path


def read_pixels(path: Path) -> np.ndarray:
    """The pixels of an image file as PIL decodes them (the file is closed afterwards)."""
    with Image.open(path) as image:
        return np.asarray(image)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- unwritable folders


def make_unwritable(folder: Path, monkeypatch) -> str:
    """Create ``folder`` and make it read-only for this process; returns how (``chmod`` or ``fake``).

    ``chmod 555`` where it stops this process; as root it does not, so then a fake read-only
    filesystem: ``os.open`` creating a file and ``os.mkdir`` anywhere under ``folder`` fail
    with ``EROFS``, as on a read-only mount (the files odssam writes go through both).
    """
    import errno

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return "chmod"
    (folder / "probe").unlink()
    folder.chmod(0o755)
    root = os.path.realpath(folder)

    def inside(path) -> bool:
        path = os.path.realpath(os.fspath(path))
        return path == root or path.startswith(root + os.sep)

    real_open, real_mkdir = os.open, os.mkdir

    def read_only_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and inside(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def read_only_mkdir(path, *args, **kwargs):
        if inside(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    return "fake"


def write_blob_split(folder: Path, count: int, rng: np.random.Generator) -> None:
    """``count`` dark 40x56 blobs on a noisy surface, in the folder-dataset layout (images/, masks/)."""
    for index in range(count):
        mask = random_ellipse((40, 56), rng, centre=(0.4, 0.6), radius=(0.2, 0.3))
        image = np.repeat(150 + 20 * rng.standard_normal((40, 56, 1)), 3, axis=2)
        image[mask] -= 90
        save_image(np.clip(image, 0, 255).astype(np.uint8), folder / "images" / f"{index:02d}.png")
        save_image(mask, folder / "masks" / f"{index:02d}.png")


def assert_only_the_prompt_encoder_learns(model, images: list[np.ndarray]) -> None:
    """One Dice+BCE backward through ``model``: every prompt-encoder parameter gets a finite,
    not all-zero gradient, the frozen segmenter none, and ``trainable_parameters`` lists exactly them."""
    from odssam.models.loss import DiceBCELoss, masks_to_targets

    x, input_sizes, _ = model.preprocess(images)
    masks = [np.zeros(image.shape[:2], bool) for image in images]
    masks[0][20:60, 30:70] = True
    targets = masks_to_targets(masks, input_sizes, model.image_size, model.logit_size)
    model.zero_grad(set_to_none=True)
    DiceBCELoss()(model(x), targets).backward()
    trainable = dict(model.prompt_encoder.named_parameters())
    assert trainable and all(p.requires_grad for p in trainable.values())
    missing = [name for name, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"
    assert sum(p.grad.abs().sum() for p in trainable.values()) > 0
    assert all(not p.requires_grad and p.grad is None for p in model.segmenter.parameters())
    assert model.trainable_parameters() and len(model.trainable_parameters()) == len(trainable)
