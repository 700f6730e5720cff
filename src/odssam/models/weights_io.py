"""Reading weight files safely, shared by the SAM and the feature-encoder loaders.

``.safetensors`` files are read with ``safetensors`` (tensors only by construction); every
other file with ``torch.load(..., weights_only=True)``, so a file can never run code. Damage,
pickled Python objects and missing files become :class:`~odssam.errors.OdsSamError` naming
the file.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from odssam.errors import OdsSamError

SAFETENSORS_SUFFIX = ".safetensors"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def describe_object(value: object) -> str:
    """A short description of what a file held, for error messages."""
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a mapping of {len(value)} entries"
    return f"a {type(value).__name__}"


def examples(items: list[str], count: int = 3) -> str:
    """The first ``count`` items joined, with how many more there are."""
    shown = ", ".join(items[:count])
    return shown + (f", ... ({len(items) - count} more)" if len(items) > count else "")


def corrupt_message(path: Path, error: BaseException, expected_size: int | None = None) -> str:
    """Message for a file that exists but cannot be read as weights."""
    size = path.stat().st_size
    message = f"{path}: truncated or corrupt, not a readable weights file ({size} bytes; {first_line(error)})"
    if expected_size is not None and expected_size != size:
        message += f"; the official {path.name} has {expected_size} bytes: download it again"
    return message


def read_weights_file(path: str | Path, what: str = "checkpoint", expected_size: int | None = None) -> Any:
    """Read a weights file on the CPU without running code; return what it holds.

    Args:
        path: A ``.safetensors`` file, or any file written by ``torch.save``.
        what: Name of the file's role in error messages (``"SAM checkpoint"`` ...).
        expected_size: Size of the official file of this name, if known (hint for truncation).

    Returns:
        A ``dict`` of tensors for ``.safetensors``; whatever ``torch.load`` gives otherwise.

    Raises:
        OdsSamError: Missing file, a folder, damage, or pickled objects other than tensors.
    """
    path = Path(path)
    if not path.exists():
        raise OdsSamError(f"{what} not found: {path}")
    if not path.is_file():
        raise OdsSamError(f"{what} {path} is not a file")
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # safetensors reports damage as SafetensorError, OSError...
            raise OdsSamError(corrupt_message(path, error, expected_size)) from error
    try:
        # mmap needs the zip format; older files load fully into memory.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        # "Unsupported operand" means the bytes are not a pickle at all, i.e. damage.
        if "weights only load failed" in str(error).lower() and "unsupported operand" not in str(error).lower():
            found = re.search(r"GLOBAL ([\w.]+)", str(error))
            raise OdsSamError(
                f"{path}: refused: the file holds pickled Python objects other than tensors"
                f"{f' ({found.group(1)})' if found else ''}. Checkpoints are read with weights_only=True "
                "so that a file cannot run code; if you trust it, load it yourself with weights_only=False "
                "and torch.save its state dict (names -> tensors) alone"
            ) from error
        raise OdsSamError(corrupt_message(path, error, expected_size)) from error
    except Exception as error:  # torch reports damage as RuntimeError, EOFError, KeyError...
        raise OdsSamError(corrupt_message(path, error, expected_size)) from error


def strict_load_problems(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, torch.Tensor]) -> list[str]:
    """Why ``state`` would not load strictly into a model whose tensors have the ``expected`` shapes.

    Returns:
        Summaries of the missing keys, unexpected keys and shape mismatches (a few examples
        each); empty when every key and shape matches.
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(key for key in set(expected) & set(state) if tuple(state[key].shape) != tuple(expected[key]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({examples(unexpected)})")
    if mismatched:
        shapes = [f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key])}" for key in mismatched]
        problems.append(f"{len(mismatched)} shape mismatches ({examples(shapes, 2)})")
    return problems
