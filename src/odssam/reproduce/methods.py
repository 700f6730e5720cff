"""Which method a run folder is: its label in ``odssam compare`` and its rows in the paper.

A run's label is its model's display name (``model.name``: ``ods_sam`` -> ``ODS-SAM``)
plus the model settings that set it apart from the other compared runs of the same
``model.name`` (``ODS-SAM (use_odconv=False)``); ``--label RUN=NAME`` replaces it. Runs
with one label form one method row (e.g. one model per MVTec AD category); where two of
them were scored on the same test set, the run folder's name is added to tell them apart.

The paper's rows of a method (``paper_results.csv``): the full ODS-SAM is ``Our``/``Ours``
(Tables 1-3), ``Our ODSSAM`` (Table 7) and the full-model rows of the ablations; an
ablation variant is its row of Tables 4-6; any other model is the row whose label reads
like its display name, where the paper has one: ``U-Net`` (Tables 1-3) and ``AutoSAM``
(Tables 1 and 7).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from odssam.errors import OdsSamError
from odssam.reproduce.configs import flatten_config
from odssam.reproduce.paper_results import all_figures
from odssam.reproduce.run_folders import FinishedRun

DISPLAY_NAMES = {"ods_sam": "ODS-SAM", "autosam": "AutoSAM", "sam_noprompt": "SAM (no prompt)", "unet": "U-Net"}
# Model settings that change speed or memory but not what is learned: never part of a label.
_NEUTRAL_MODEL_KEYS = {
    "sam.fast_encoder", "prompt_encoder.ssm.scan_backend", "prompt_encoder.ssm.chunk_size",
    "prompt_encoder.ssm.scan_checkpoint", "prompt_encoder.odconv.per_sample",
}  # fmt: skip
MAX_LABEL_KEYS = 3
# The full model: every component, one OD-SSM layer and two parallel ODConv layers.
_FULL_MODEL = {"use_dwconv": True, "use_ssm": True, "use_odconv": True, "ssm_layers": 1, "odconv_layers": 2}
# Tables and rows of the full model, main results first (a column takes the first row that has it).
_OURS_ROWS = (
    ("table1", "Our"), ("table2", "Ours"), ("table3", "Our"), ("table7", "Our ODSSAM"),
    ("table4", "SAM + OD-SSM + OD Conv"), ("table5", "2"), ("table6", "1"),
)  # fmt: skip


def model_name(model: dict[str, Any]) -> str:
    return str(model.get("name") or "ods_sam")


def display_name(model: dict[str, Any]) -> str:
    """``ODS-SAM``, ``AutoSAM`` ... (an unknown ``model.name`` as it is)."""
    name = model_name(model)
    return DISPLAY_NAMES.get(name, name)


def _short(key: str) -> str:
    return key.removeprefix("prompt_encoder.")


def automatic_labels(runs: Sequence[FinishedRun]) -> list[str]:
    """Display name plus the model settings that differ among the runs of the same ``model.name``."""
    flat = [flatten_config(run.model) for run in runs]
    labels = []
    for index, run in enumerate(runs):
        same_model = [f for f, other in zip(flat, runs) if model_name(other.model) == model_name(run.model)]
        keys = sorted({k for f in same_model for k in f} - _NEUTRAL_MODEL_KEYS - {"name"})
        differing = [k for k in keys if len({repr(f.get(k)) for f in same_model}) > 1]
        settings = ", ".join(f"{_short(k)}={flat[index].get(k)}" for k in differing[:MAX_LABEL_KEYS])
        if len(differing) > MAX_LABEL_KEYS:
            settings += ", ..."
        labels.append(display_name(run.model) + (f" ({settings})" if settings else ""))
    return labels


def parse_label_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["RUN=NAME", ...]`` -> ``{RUN: NAME}``.

    Raises:
        OdsSamError: An item without ``=`` or with an empty side.
    """
    overrides = {}
    for item in items:
        run, sep, name = item.partition("=")
        if not sep or not run.strip() or not name.strip():
            raise OdsSamError(f"--label {item!r}: expected RUN=NAME (RUN: a run folder given on the command line)")
        overrides[run.strip()] = name.strip()
    return overrides


def _matches(given: str, run: FinishedRun) -> bool:
    path = Path(given)
    return path.resolve() == run.path.resolve() or given.rstrip("/") == run.path.name


def method_labels(runs: Sequence[FinishedRun], overrides: dict[str, str] | None = None) -> list[str]:
    """One label per run: ``--label`` overrides, else :func:`automatic_labels`; clashes get the run's name.

    Raises:
        OdsSamError: A ``--label`` naming none of the runs.
    """
    labels = automatic_labels(runs)
    for given, name in (overrides or {}).items():
        hits = [index for index, run in enumerate(runs) if _matches(given, run)]
        if not hits:
            raise OdsSamError(f"--label {given}={name}: {given} is none of the compared run folders")
        for index in hits:
            labels[index] = name
    overridden = {index for given in overrides or {} for index, run in enumerate(runs) if _matches(given, run)}
    for index, run in enumerate(runs):
        clashing = [
            other for j, other in enumerate(runs)
            if j != index and labels[j] == labels[index] and set(other.results) & set(run.results)
        ]  # fmt: skip
        if clashing and index not in overridden:
            labels[index] = f"{labels[index]} [{run.path.name}]"
    return labels


def _normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def paper_rows(model: dict[str, Any]) -> list[tuple[str, str]]:
    """``(table, row)`` of the paper that report this model, main results first (may be empty)."""
    if model_name(model) != "ods_sam":
        wanted = {_normalised(display_name(model)), _normalised(model_name(model))}
        return list(dict.fromkeys((f.table, f.row) for f in all_figures() if _normalised(f.row) in wanted))
    prompt = model.get("prompt_encoder") or {}
    variant = {
        "use_dwconv": prompt.get("use_dwconv", True),
        "use_ssm": prompt.get("use_ssm", True),
        "use_odconv": prompt.get("use_odconv", True),
        "ssm_layers": (prompt.get("ssm") or {}).get("num_layers", 1),
        "odconv_layers": (prompt.get("odconv") or {}).get("num_layers", 2),
    }
    if (prompt.get("odconv") or {}).get("arrangement", "parallel") != "parallel":
        return []
    if variant == _FULL_MODEL:
        return list(_OURS_ROWS)
    flags = (variant["use_dwconv"], variant["use_ssm"], variant["use_odconv"])
    layers = (variant["ssm_layers"], variant["odconv_layers"])
    table4 = {(False, False, False): "SAM", (True, True, False): "SAM + OD-SSM", (True, False, True): "SAM + OD Conv"}
    if flags in table4 and layers == (1, 2):
        return [("table4", table4[flags])]
    if flags == (True, True, True) and layers[0] == 1 and layers[1] in (1, 3):
        return [("table5", str(layers[1]))]
    if flags == (True, True, True) and layers[1] == 2 and layers[0] in (2, 3):
        return [("table6", str(layers[0]))]
    return []
