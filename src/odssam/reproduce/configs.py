"""Where ``odssam reproduce`` reads the paper's experiment configs.

The paper configs live in the package, ``odssam/configs/`` (package data), so the command
finds them however odssam was installed: from a clone (``pip install -e .``), from a wheel,
or with ``PYTHONPATH=src``. The repository's ``configs/`` (what users read and pass to
``odssam train --config``) is a link to that folder, so there is one copy.
``--configs DIR`` reads another folder of the same layout instead (e.g. edited copies).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from odssam.errors import OdsSamError


def packaged_config_dir() -> Path:
    """The packaged paper configs (``odssam/configs``; the repository's ``configs/`` links here)."""
    return Path(str(resources.files("odssam") / "configs"))


def config_dir(override: str | Path | None = None) -> Path:
    """``override`` if given (it must be a folder), else the packaged configs.

    Raises:
        OdsSamError: If the folder does not exist.
    """
    folder = Path(override) if override else packaged_config_dir()
    if not folder.is_dir():
        what = "--configs folder" if override else "packaged config folder (reinstall odssam)"
        raise OdsSamError(f"{what} not found: {folder}")
    return folder


def read_config_dict(folder: Path, relative: str) -> dict[str, Any]:
    """The mapping of ``folder/relative`` (a paper config such as ``ablations/odssm.yaml``).

    Raises:
        OdsSamError: If the file is missing, not YAML, or not a mapping.
    """
    path = folder / relative
    if not path.is_file():
        raise OdsSamError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise OdsSamError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise OdsSamError(f"{path}: the top level must be a mapping")
    return data


def flatten_config(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config: ``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}``."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
