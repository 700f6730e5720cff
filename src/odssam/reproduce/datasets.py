"""Finding each dataset under ``--data-root`` and counting its splits without training.

Under the data root each dataset is looked for in a sub-folder of one of the names below
(case-insensitive), then in the data root itself; the first folder where the training
split can be built is used (the dataset readers accept their usual wrapping folders
inside it too, see ``odssam data list``):

========  =======================================================================
mvtec     ``MVTec-AD``, ``MVTec_AD``, ``mvtec_anomaly_detection``, ``mvtec``,
          ``mvtec_ad``, ``MVTecAD``: the folder holding the category folders
pranet    ``PraNet``, ``polyp``, ``polyps``: the folder holding ``TrainDataset/``
          and ``TestDataset/``
monuseg   ``MoNuSeg``, ``MoNuSeg2018``, ``monuseg``: the folder holding
          ``MoNuSegTrainingData/`` and ``MoNuSegTestData/``
glas      ``GlaS``, ``Warwick QU Dataset (Released 2016_07_08)``,
          ``Warwick_QU_Dataset``: the folder holding the ``.bmp`` files
========  =======================================================================

Counting only lists files (the dataset index); nothing is decoded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from odssam.config import DataConfig
from odssam.data.index import find_dir
from odssam.engine.setup import build_split
from odssam.errors import OdsSamError

FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "mvtec": ("MVTec-AD", "MVTec_AD", "mvtec_anomaly_detection", "mvtec", "mvtec_ad", "MVTecAD"),
    "pranet": ("PraNet", "polyp", "polyps"),
    "monuseg": ("MoNuSeg", "MoNuSeg2018", "monuseg"),
    "glas": ("GlaS", "Warwick QU Dataset (Released 2016_07_08)", "Warwick_QU_Dataset"),
}


@dataclass
class DataStatus:
    """What one experiment's data looks like under the data root.

    Attributes:
        label: ``dataset`` or ``dataset/category``.
        root: The folder the dataset was found in (``None``: not found).
        counts: Images per split (``train``, ``val`` if held out, and ``test`` or
            ``test:<set>`` per test set).
        missing: Why the experiment cannot run (``None``: it can).
        missing_tests: Test set -> why it cannot be scored (the run still trains).
        looked_in: The folders tried.
    """

    label: str
    root: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    missing: str | None = None
    missing_tests: dict[str, str] = field(default_factory=dict)
    looked_in: list[Path] = field(default_factory=list)


def candidate_roots(data_root: Path, dataset: str) -> list[Path]:
    """The folders tried for ``dataset``: matching sub-folders of ``data_root``, then itself."""
    candidates = []
    for name in FOLDER_NAMES.get(dataset, (dataset,)):
        found = find_dir(data_root, name)
        if found is not None and found not in candidates:
            candidates.append(found)
    return candidates + [data_root]


def _one_line(error: Exception) -> str:
    """An error message on one line (build errors list their problems on several)."""
    return " ".join(str(error).split())


def _size(dcfg: DataConfig, split: str, category: str | None = None) -> int:
    return len(build_split(dcfg, split, category=category))


def probe_data(dcfg: DataConfig, data_root: str | Path) -> DataStatus:
    """Find ``dcfg``'s dataset under ``data_root`` and count its splits.

    Args:
        dcfg: The experiment's data section (its ``root`` is ignored).
        data_root: The folder holding the datasets.

    Returns:
        A :class:`DataStatus`; the experiment can run when ``missing`` is ``None`` (its
        training split and at least one test set were found).
    """
    data_root = Path(data_root)
    label = f"{dcfg.dataset}/{dcfg.category}" if dcfg.category else dcfg.dataset
    status = DataStatus(label, looked_in=candidate_roots(data_root, dcfg.dataset))
    reasons = []
    for candidate in status.looked_in:
        trial = dataclasses.replace(dcfg, root=str(candidate))
        try:
            status.counts["train"] = _size(trial, "train")
        except OdsSamError as error:
            reasons.append(_one_line(error))
            continue
        status.root = candidate
        break
    if status.root is None:
        tried = ", ".join(str(path) for path in status.looked_in)
        status.missing = f"not usable (tried {tried}): {reasons[0] if reasons else 'no folder'}"
        return status
    found = dataclasses.replace(dcfg, root=str(status.root))
    if dcfg.val_count > 0:
        status.counts["val"] = _size(found, "val")
    test_sets = list(dcfg.test_sets) or [None]
    for test_set in test_sets:
        key = f"test:{test_set}" if test_set else "test"
        try:
            status.counts[key] = _size(found, "test", test_set)
        except OdsSamError as error:
            status.missing_tests[test_set or dcfg.dataset] = _one_line(error)
    if not any(key.startswith("test") for key in status.counts):
        status.missing = "no test images: " + "; ".join(status.missing_tests.values())
    return status
