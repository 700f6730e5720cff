"""Training checkpoints: the prompt encoder's weights plus what is needed to resume.

Writer and readers live here together, below both the engine (which trains and resumes)
and inference (which predicts from a checkpoint), so neither imports the other for it.

A checkpoint is a plain dict written with ``torch.save`` and readable with
``torch.load(weights_only=True)`` (tensors, dicts, lists, tuples, str, int, float, bool,
None only), so loading one never runs pickled code::

    {
      "format": "odssam", "version": 1,
      "config": to_dict(ExperimentConfig),        # the resolved experiment config
      "prompt_encoder": state_dict,               # the only trained weights
      "sam_fingerprint": str,                     # identity of the frozen SAM weights
      "epoch": int, "step": int, "best_metric": float | None,
      # last.pt only, to resume:
      "optimizer": state_dict, "scheduler": state_dict | None, "rng": {...},
    }

SAM's weights are not stored: they come from ``model.sam.checkpoint`` or, for random
weights, from ``model.sam.init_seed``; the fingerprint catches a mismatch at load time.

:func:`checkpoint_payload` builds this dict, :func:`load_checkpoint` reads it back,
:func:`restore_training_state` resumes from it and :func:`load_model_from_checkpoint`
rebuilds the model for prediction.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odssam.config import ExperimentConfig, ModelConfig, from_dict, to_dict, with_overrides
from odssam.errors import OdsSamError
from odssam.utils.atomic import atomic_write

CHECKPOINT_FORMAT = "odssam"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "prompt_encoder", "sam_fingerprint", "epoch", "step")


def checkpoint_payload(
    cfg: ExperimentConfig,
    trainable: torch.nn.Module,
    sam_fingerprint: str,
    *,
    epoch: int,
    step: int,
    best_metric: float | None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of a run after ``epoch`` (see the module docstring).

    Args:
        cfg: The experiment being trained.
        trainable: The module whose weights train (the model's ``trainable``, not a
            ``torch.compile`` wrapper of it); stored under ``"prompt_encoder"`` on the CPU.
        sam_fingerprint: The model's ``frozen_fingerprint()``.
        epoch, step, best_metric: The run's counters after that epoch.
        optimizer: Given for ``last.pt``: the optimizer and scheduler states and every RNG
            state are stored too, so the run can resume; ``None`` for ``best.pt``.
        scheduler: The learning-rate scheduler, if any (stored as ``None`` otherwise).
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": to_dict(cfg),
        "prompt_encoder": {k: v.detach().cpu() for k, v in trainable.state_dict().items()},
        "sam_fingerprint": sam_fingerprint,
        "epoch": epoch,
        "step": step,
        "best_metric": best_metric,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
        payload["scheduler"] = scheduler.state_dict() if scheduler is not None else None
        payload["rng"] = capture_rng_state()
    return payload


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: a temp file in the same folder, synced to disk, then ``os.replace``.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    return atomic_write(path, lambda file: torch.save(payload, file), fsync=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU, ``weights_only``).

    Raises:
        OdsSamError: The file is missing, truncated, not a torch file, holds pickled code,
            or is not an odssam checkpoint (e.g. an official SAM checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise OdsSamError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise OdsSamError(
            f"{path}: refused to load: the file holds objects other than tensors and plain "
            f"values (an odssam checkpoint never does): {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise OdsSamError(f"{path}: not a readable checkpoint (truncated or corrupt?): {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        hint = ""
        if isinstance(payload, dict) and any(str(k).startswith("image_encoder.") for k in payload):
            hint = " (this looks like a SAM checkpoint: pass it as model.sam.checkpoint instead)"
        raise OdsSamError(f"{path}: not an odssam training checkpoint{hint}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise OdsSamError(
            f"{path}: checkpoint format version {payload.get('version')!r} is not supported "
            f"(this odssam reads version {CHECKPOINT_VERSION})"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise OdsSamError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload


def config_from_checkpoint(payload: dict[str, Any], path: str | Path = "checkpoint") -> ExperimentConfig:
    """The :class:`ExperimentConfig` a checkpoint was trained with."""
    try:
        return from_dict(ExperimentConfig, payload["config"])
    except (OdsSamError, TypeError) as error:
        raise OdsSamError(f"{path}: the stored config does not match this odssam version: {error}") from error


def resumable_model_config(model: dict[str, Any]) -> dict[str, Any]:
    """A model config as the trainer compares it when resuming (``last.pt``'s against the given one).

    Missing fields take this version's defaults, so a checkpoint written before a field
    existed compares equal to a config that leaves it at its default. The trainable part's
    starting weights (``prompt_encoder.feature_encoder.checkpoint``, ``unet.weights``) are left
    out: they say where a run began, and a resumed run takes every weight from ``last.pt``.
    """
    full = to_dict(from_dict(ModelConfig, model, "model."))
    del full["prompt_encoder"]["feature_encoder"]["checkpoint"]
    del full["unet"]["weights"]
    return full


def load_resumable_checkpoint(path: str | Path, model_cfg: ModelConfig) -> dict[str, Any]:
    """Read ``last.pt`` of a run to resume with ``model_cfg``.

    Raises:
        OdsSamError: Unreadable file, a model config other than the stored one (compared
            as :func:`resumable_model_config` does), or no optimizer state (``best.pt``).
    """
    payload = load_checkpoint(path)
    if resumable_model_config(payload["config"]["model"]) != resumable_model_config(to_dict(model_cfg)):
        raise OdsSamError(f"{path}: the model config differs from the one being resumed; resume with its config")
    if "optimizer" not in payload:
        raise OdsSamError(f"{path}: holds no optimizer state, so it cannot be resumed")
    return payload


def restore_training_state(
    payload: dict[str, Any],
    trainable: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[int, int, float | None]:
    """Put a resumable checkpoint's state back: weights, optimizer, scheduler and RNG states.

    Inverse of :func:`checkpoint_payload` with an optimizer. Call it after building the
    optimizer and scheduler (and anything else that draws random numbers): the RNG streams
    then continue exactly where the checkpointed run left them.

    Returns:
        ``(epoch, step, best_metric)`` of the checkpointed run.
    """
    trainable.load_state_dict(payload["prompt_encoder"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    restore_rng_state(payload["rng"])
    return payload["epoch"], payload["step"], payload["best_metric"]


def load_model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", sam_checkpoint: str | None = None
):
    """Rebuild the trained model of a checkpoint.

    Args:
        path: ``best.pt`` or ``last.pt`` of a run.
        device: Where to put the model.
        sam_checkpoint: SAM weights to use instead of the path stored in the config (e.g.
            the same official file in another folder on this machine).

    Returns:
        ``(model, cfg)``: the :class:`~odssam.models.ods_sam.OdsSam` in eval mode and the
        run's :class:`ExperimentConfig`.

    Raises:
        OdsSamError: Unreadable checkpoint, or SAM weights that differ from those the
            prompt encoder was trained with.
    """
    from odssam.models.registry import build_model

    payload = load_checkpoint(path)
    cfg = config_from_checkpoint(payload, path)
    if sam_checkpoint is not None:
        cfg = with_overrides(cfg, {"model.sam.checkpoint": sam_checkpoint})
    # The trained prompt encoder's weights are in the checkpoint: its feature encoder's
    # starting weights (feature_encoder.checkpoint) are neither needed nor read.
    model = build_model(cfg.model, feature_encoder_weights=False)
    fingerprint = model.frozen_fingerprint()
    if fingerprint != payload["sam_fingerprint"]:
        source = cfg.model.sam.checkpoint or f"random weights with init_seed={cfg.model.sam.init_seed}"
        raise OdsSamError(
            f"{path}: the SAM weights ({source}) differ from those this prompt encoder was "
            f"trained with (fingerprint {fingerprint[:12]} != {str(payload['sam_fingerprint'])[:12]}); "
            "pass the SAM checkpoint used for training"
        )
    try:
        model.trainable.load_state_dict(payload["prompt_encoder"], strict=True)
    except RuntimeError as error:
        raise OdsSamError(f"{path}: prompt encoder weights do not fit the stored config: {error}") from error
    model = model.to(device).eval()
    model.set_channels_last(torch.device(device).type == "cuda")
    return model, cfg


# --------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """Every random generator a training run draws from, in a ``weights_only``-safe form."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["bit_generator"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(int(v) for v in py_state["internal"].tolist()), py_state["gauss_next"]))
