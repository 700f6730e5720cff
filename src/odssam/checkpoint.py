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
      # added by save_checkpoint, checked by load_checkpoint (absent in files of odssam
      # versions before it, which still load):
      "digest": "sha256:<hex>",                   # of every other entry, see payload_digest
    }

SAM's weights are not stored: they come from ``model.sam.checkpoint`` or, for random
weights, from ``model.sam.init_seed``; the fingerprint catches a mismatch at load time.

A file is trusted only after its digest matches: the zip container ``torch.save`` writes
carries CRCs that ``torch.load`` does not check, so a flipped bit in a weight would
otherwise load silently. The reader also refuses payloads of the wrong shape (a config
that is not a mapping, weights that are not tensors) and NaN or infinite weights, each
with one line naming the file and the entry.

:func:`checkpoint_payload` builds this dict, :func:`load_checkpoint` reads it back,
:func:`restore_training_state` resumes from it and :func:`load_model_from_checkpoint`
rebuilds the model for prediction.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
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
# Every entry a checkpoint written before digests existed can hold.
UNDIGESTED_KEYS = (*REQUIRED_KEYS, "best_metric", "optimizer", "scheduler", "rng")
DIGEST_KEY = "digest"
DIGEST_ALGORITHM = "sha256"


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
    """The checkpoint dict of a run after ``epoch`` (see the module docstring), a snapshot.

    Every tensor is a CPU copy and every dict or list a new one, so training can go on
    while the payload is written (:mod:`odssam.engine.checkpoint_writer`).

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
        "prompt_encoder": _on_cpu(trainable.state_dict()),
        "sam_fingerprint": sam_fingerprint,
        "epoch": epoch,
        "step": step,
        "best_metric": best_metric,
    }
    if optimizer is not None:
        # On the CPU once, here: torch.save would copy it anyway, and the digest reads the copy.
        payload["optimizer"] = _on_cpu(optimizer.state_dict())
        payload["scheduler"] = _on_cpu(scheduler.state_dict()) if scheduler is not None else None
        payload["rng"] = capture_rng_state()
    return payload


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: a temp file in the same folder, synced to disk, then ``os.replace``.

    A crash mid-write leaves the previous file intact, never a truncated one. The payload's
    digest (:func:`payload_digest`) is stored with it under ``"digest"``: one pass over the
    CPU bytes of its tensors, at epoch end, not in the step loop (SHA-256: about 2 ms per MB
    on one busy CPU core, so about 0.15 s for the 70 MB ``last.pt`` of configs/tiny.yaml).
    """
    body = {key: value for key, value in payload.items() if key != DIGEST_KEY}
    stored = {**body, DIGEST_KEY: payload_digest(body)}
    return atomic_write(path, lambda file: torch.save(stored, file), fsync=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU, ``weights_only``).

    Every checkpoint reader (predict, eval, export, ``odssam.load``, ``train --resume``)
    comes through here, so each gets the same checks.

    Raises:
        OdsSamError: The file is missing, truncated or damaged (its digest does not match),
            not a torch file, holds pickled code, is not an odssam checkpoint (e.g. an
            official SAM checkpoint), holds entries of the wrong type, or NaN/inf weights.
    """
    path = Path(path)
    if not path.is_file():
        raise OdsSamError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways on damaged bytes (KeyError, EOFError, ...)
        message = str(error)
        if "Unsupported global" in message:
            raise OdsSamError(
                f"{path}: refused to load: the file holds objects other than tensors and plain "
                f"values (an odssam checkpoint never does), or is damaged: {_load_failure(message)}"
            ) from error
        reason = _load_failure(message) or type(error).__name__
        raise OdsSamError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        hint = ""
        if isinstance(payload, dict) and any(str(k).startswith("image_encoder.") for k in payload):
            hint = " (this looks like a SAM checkpoint: pass it as model.sam.checkpoint instead)"
        elif not isinstance(payload, dict):
            hint = f" (it holds a {type(payload).__name__}, not a dict)"
        raise OdsSamError(f"{path}: not an odssam training checkpoint{hint}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise OdsSamError(
            f"{path}: checkpoint format version {payload.get('version')!r} is not supported "
            f"(this odssam reads version {CHECKPOINT_VERSION})"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise OdsSamError(f"{path}: checkpoint lacks {', '.join(missing)}")
    verify_digest(payload, path)
    check_payload_types(payload, path)
    check_finite_weights(payload["prompt_encoder"], path)
    return payload


def _load_failure(message: str) -> str:
    """The informative part of a ``torch.load`` error: the unpickler's reason, or the first sentence."""
    if "WeightsUnpickler error:" in message:
        message = message.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0].split(". ")[0] if lines else ""
    return first[:200]


# --------------------------------------------------------------------------- integrity


def payload_digest(payload: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` over every entry of a checkpoint payload, ``"digest"`` excepted.

    Tensors contribute their place in the payload, dtype, shape and bytes (read on the
    CPU: tensors already there are not copied); plain values their type and ``repr``, so
    a changed epoch or config value counts too. Costs one pass over the bytes.
    """
    hasher = hashlib.new(DIGEST_ALGORITHM)
    _feed_digest(hasher, "", {key: value for key, value in payload.items() if key != DIGEST_KEY})
    return f"{DIGEST_ALGORITHM}:{hasher.hexdigest()}"


def _feed_digest(hasher, where: str, value: Any) -> None:
    """Add ``value``, found at ``where`` in the payload, to ``hasher`` (depth first, in stored order)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"{where}:tensor:{str(tensor.dtype)}:{tuple(tensor.shape)}\n".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        # Container kinds, not type names: an OrderedDict and a dict of the same entries are equal.
        hasher.update(f"{where}:mapping:{len(value)}\n".encode())
        for key, item in value.items():
            _feed_digest(hasher, f"{where}/{key!r}", item)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{where}:sequence:{len(value)}\n".encode())
        for index, item in enumerate(value):
            _feed_digest(hasher, f"{where}[{index}]", item)
    else:
        hasher.update(f"{where}:{type(value).__name__}:{value!r}\n".encode())


def verify_digest(payload: Mapping[str, Any], path: str | Path) -> None:
    """Refuse a payload whose stored digest does not match its entries.

    A checkpoint written before digests existed has none and is accepted if it holds only
    the entries such checkpoints held: a damaged ``"digest"`` key (one flipped bit in its
    name) shows up as an entry no checkpoint has.
    """
    if DIGEST_KEY not in payload:
        unknown = sorted(str(key) for key in payload if key not in UNDIGESTED_KEYS)
        if unknown:
            raise OdsSamError(f"{path}: damaged: no digest, and entries no checkpoint holds: {', '.join(unknown)}")
        return
    stored = payload[DIGEST_KEY]
    if not (isinstance(stored, str) and stored.startswith(f"{DIGEST_ALGORITHM}:")):
        raise OdsSamError(f"{path}: damaged: its digest entry is not a {DIGEST_ALGORITHM} digest ({stored!r:.60})")
    if payload_digest(payload) != stored:
        raise OdsSamError(
            f"{path}: damaged: tensor digest mismatch (its weights or values are not those that "
            "were written: a disk or copy error?); use another copy or an earlier checkpoint"
        )


def check_payload_types(payload: Mapping[str, Any], path: str | Path) -> None:
    """Refuse entries of the wrong type: one line naming the entry and what it holds."""

    def refuse(key: str, expected: str, value: Any) -> None:
        raise OdsSamError(f"{path}: checkpoint entry '{key}' must be {expected}, got {type(value).__name__}")

    if not isinstance(payload["config"], Mapping):
        refuse("config", "a mapping (the experiment config)", payload["config"])
    weights = payload["prompt_encoder"]
    if not isinstance(weights, Mapping):
        refuse("prompt_encoder", "a mapping of names to tensors", weights)
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            refuse(f"prompt_encoder[{name!r}]", "a tensor", tensor)
    if not isinstance(payload["sam_fingerprint"], str):
        refuse("sam_fingerprint", "a string", payload["sam_fingerprint"])
    for key in ("epoch", "step"):
        if not isinstance(payload[key], int) or isinstance(payload[key], bool):
            refuse(key, "an integer", payload[key])
    best = payload.get("best_metric")
    if best is not None and not isinstance(best, (int, float)):
        refuse("best_metric", "a number or None", best)
    for key in ("optimizer", "rng"):
        if key in payload and not isinstance(payload[key], Mapping):
            refuse(key, "a mapping", payload[key])


def check_finite_weights(weights: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Refuse NaN or infinite weights, naming the first tensor that holds one (e.g. of a diverged run)."""
    for name, tensor in weights.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise OdsSamError(
                f"{path}: weight '{name}' holds NaN or infinite values (a diverged run?); "
                "use an earlier checkpoint"
            )


def _on_cpu(value: Any) -> Any:
    """A copy of ``value`` (nested dicts, lists, tuples) with every tensor copied to the CPU.

    Copied also when already there, so the payload is a snapshot: the next optimizer step
    (which updates weights and Adam's moments in place) cannot change it while a background
    thread writes it.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(item) for item in value)
    return value


def config_from_checkpoint(payload: dict[str, Any], path: str | Path = "checkpoint") -> ExperimentConfig:
    """The :class:`ExperimentConfig` a checkpoint was trained with."""
    try:
        return from_dict(ExperimentConfig, payload["config"])
    except (OdsSamError, TypeError, ValueError, AttributeError) as error:
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
    try:
        stored_model = resumable_model_config(payload["config"].get("model"))
    except OdsSamError as error:
        raise OdsSamError(f"{path}: the stored config does not match this odssam version: {error}") from error
    if stored_model != resumable_model_config(to_dict(model_cfg)):
        raise OdsSamError(f"{path}: the model config differs from the one being resumed; resume with its config")
    if "optimizer" not in payload:
        raise OdsSamError(f"{path}: holds no optimizer state, so it cannot be resumed")
    lacking = [f"optimizer.{key}" for key in ("state", "param_groups") if key not in payload["optimizer"]]
    lacking += [f"rng.{key}" for key in ("torch", "numpy", "python") if key not in payload.get("rng", {})]
    if lacking:
        raise OdsSamError(f"{path}: cannot be resumed: it lacks {', '.join(lacking)}")
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

    Raises:
        OdsSamError: A stored state does not fit this run's model, optimizer or scheduler.
    """
    try:
        trainable.load_state_dict(payload["prompt_encoder"])
        optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and payload.get("scheduler") is not None:
            scheduler.load_state_dict(payload["scheduler"])
        restore_rng_state(payload["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise OdsSamError(f"the checkpoint's training state cannot be restored: {first_line}") from error
    return payload["epoch"], payload["step"], payload.get("best_metric")


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
    from odssam.models.random_weights import warn_random_weights
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
    warn_random_weights(model, cfg.model, trained=True)
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
