"""Dataset registry and the one factory, :func:`build_dataset`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from odssam.data.base import SegmentationDataset
from odssam.data.datasets.clinicdb import index_clinicdb
from odssam.data.datasets.folder import index_folder
from odssam.data.datasets.glas import index_glas
from odssam.data.datasets.kvasir import index_kvasir
from odssam.data.datasets.monuseg import index_monuseg
from odssam.data.datasets.mvtec import CATEGORIES as MVTEC_CATEGORIES
from odssam.data.datasets.mvtec import index_mvtec
from odssam.data.datasets.pranet import TEST_SETS as PRANET_TEST_SETS
from odssam.data.datasets.pranet import index_pranet
from odssam.data.index import DatasetIndex, Entry, IndexOptions, Issue
from odssam.data.splits import SPLIT_NAMES, hold_out_validation, read_split_file
from odssam.errors import OdsSamError

# Problems quoted in a build error before pointing to ``odssam data check``.
_ERRORS_SHOWN = 8

class EmptySplitError(OdsSamError):
    """The requested split holds no images in this folder (e.g. a partial copy)."""


Indexer = Callable[[str | Path, str | None, IndexOptions], DatasetIndex]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset layout.

    Attributes:
        name: Registry name.
        title: Human name.
        indexer: ``(root, category, options) -> DatasetIndex``.
        layout: The on-disk layout expected under ``root``.
        protocol: The paper's protocol for it.
        categories: Valid ``category`` values (MVTec AD categories, PraNet test sets ...).
        paper_image_size: Square size the paper resizes to (``None``: kept).
    """

    name: str
    title: str
    indexer: Indexer
    layout: str
    protocol: str
    categories: tuple[str, ...] = ()
    paper_image_size: int | None = None


_SPECS = (
    DatasetSpec(
        name="kvasir",
        title="Kvasir-SEG",
        indexer=index_kvasir,
        layout="images/*.jpg + masks/*.jpg (JPEG masks, > 127)",
        protocol="PraNet split: 900 train / 100 test (packaged name lists)",
    ),
    DatasetSpec(
        name="clinicdb",
        title="CVC-ClinicDB",
        indexer=index_clinicdb,
        layout="Original/N.tif + Ground Truth/N.tif (or PNG copies)",
        protocol="PraNet split: 550 train / 62 test (packaged name lists)",
    ),
    DatasetSpec(
        name="pranet",
        title="PraNet polyp folders",
        indexer=index_pranet,
        layout="TrainDataset/{image,mask}/ + TestDataset/<set>/{images,masks}/ (PNG)",
        protocol="train on 1450, test on each of the five sets (category = test set)",
        categories=tuple(PRANET_TEST_SETS),
    ),
    DatasetSpec(
        name="monuseg",
        title="MoNuSeg 2018",
        indexer=index_monuseg,
        layout="MoNuSegTrainingData/{Tissue_Images/*.tif, Annotations/*.xml} + MoNuSegTestData/",
        protocol="30 train / 14 test, 512x512",
        paper_image_size=512,
    ),
    DatasetSpec(
        name="glas",
        title="GlaS (Warwick QU)",
        indexer=index_glas,
        layout="train_N.bmp + train_N_anno.bmp (instance labels), testA_N, testB_N",
        protocol="85 train / 80 test (testA 60 + testB 20), 224x224",
        categories=("testA", "testB"),
        paper_image_size=224,
    ),
    DatasetSpec(
        name="mvtec",
        title="MVTec AD",
        indexer=index_mvtec,
        layout="<category>/test/<defect>/NNN.png + <category>/ground_truth/<defect>/NNN_mask.png",
        protocol="supervised: abnormal test images split per category and defect type with a "
        "fixed seed (the paper's split is not public; odssam records its own)",
        categories=MVTEC_CATEGORIES,
    ),
    DatasetSpec(
        name="folder",
        title="Folder of images and masks",
        indexer=index_folder,
        layout="images/ + masks/ matched by stem (or train/ and test/ each holding both)",
        protocol="train/ + test/ folders, or a seeded split of one folder",
    ),
)

DATASET_REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def list_datasets() -> list[str]:
    """Registered dataset names."""
    return list(DATASET_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``.

    Raises:
        OdsSamError: For an unknown name.
    """
    spec = DATASET_REGISTRY.get(name)
    if spec is None:
        raise OdsSamError(f"unknown dataset '{name}'; choose one of {', '.join(DATASET_REGISTRY)}")
    return spec


def dataset_info(name: str) -> dict[str, Any]:
    """What ``name`` expects on disk and the paper's protocol, as a plain mapping."""
    spec = get_spec(name)
    return {
        "name": spec.name,
        "title": spec.title,
        "layout": spec.layout,
        "protocol": spec.protocol,
        "categories": list(spec.categories),
        "paper_image_size": spec.paper_image_size,
    }


def index_dataset(
    name: str, root: str | Path, category: str | None = None, options: IndexOptions | None = None
) -> DatasetIndex:
    """List a dataset folder without decoding anything (see :class:`DatasetIndex`)."""
    return get_spec(name).indexer(root, category, options or IndexOptions())


def _raise_for_errors(index: DatasetIndex, split: str | None, root: str | Path) -> None:
    errors = index.errors(split)
    if not errors:
        return
    lines = [f"  - {issue}" for issue in errors[:_ERRORS_SHOWN]]
    if len(errors) > _ERRORS_SHOWN:
        lines.append(f"  ... and {len(errors) - _ERRORS_SHOWN} more")
    raise OdsSamError(
        f"{index.dataset} dataset at {root}: {len(errors)} problem(s):\n"
        + "\n".join(lines)
        + f"\n(`odssam data check --dataset {index.dataset} --root {root}` lists everything)"
    )


def _partition_from_file(
    index: DatasetIndex, split_file: str | Path, name: str, skip_missing: str | None = None
) -> tuple[dict[str, list[str]], dict[str, dict[str, Entry]], list[str]]:
    """The recorded partition, the entries it can be read from, and the names it lacks.

    With ``skip_missing`` (the split to read), names the folder lacks are dropped, and
    those of that split returned; otherwise a missing name is an error.
    """
    record = read_split_file(split_file)
    for key, expected in (("dataset", name), ("category", index.category)):
        recorded = record.get(key)
        if recorded is not None and expected is not None and recorded != expected:
            raise OdsSamError(f"{split_file}: records {key} '{recorded}', not '{expected}'")
    train_pool = {entry.name: entry for entry in index.splits.get("train", [])}
    test_pool = {entry.name: entry for entry in index.splits.get("test", [])}
    if index.shared_pool:
        train_pool = test_pool = {**train_pool, **test_pool}
    pools = {"train": train_pool, "val": train_pool, "test": test_pool}
    partition = {split: list(record["splits"].get(split, [])) for split in SPLIT_NAMES}
    dropped: list[str] = []
    for split, names in partition.items():
        missing = [n for n in names if n not in pools[split]]
        if missing and skip_missing is not None:
            partition[split] = [n for n in names if n in pools[split]]
            dropped = missing if split == skip_missing else dropped
        elif missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise OdsSamError(
                f"{split_file}: {len(missing)} {split} name(s) not found in {index.root}: {shown}"
                + (" (odssam eval --skip-missing scores the others)" if split == "test" else "")
            )
    return partition, pools, dropped


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    *,
    category: str | None = None,
    image_size: int | None = None,
    include_good: bool = False,
    split_seed: int = 0,
    test_fraction: float = 0.5,
    val_count: int = 0,
    split_file: str | Path | None = None,
    skip_missing: bool = False,
    listing_errors: list[Issue] | None = None,
) -> SegmentationDataset:
    """Build one split of a registered dataset.

    Args:
        name: ``kvasir``, ``clinicdb``, ``pranet``, ``monuseg``, ``glas``, ``mvtec`` or ``folder``.
        root: Dataset folder in its original layout.
        split: ``train``, ``val`` or ``test``. ``val`` is the last ``val_count`` training
            images of a seeded shuffle; ``train`` excludes them.
        category: MVTec AD category (required for ``mvtec``), PraNet test set (required
            for the ``pranet`` test split), or GlaS ``testA``/``testB``.
        image_size: Resize image (bilinear) and mask (nearest) to this square size;
            ``None`` keeps each image's size.
        include_good: MVTec AD: add defect-free test images with empty masks.
        split_seed: Seed of the seeded splits (validation hold-out, MVTec AD, flat folders).
        test_fraction: Fraction kept for testing by the seeded MVTec AD / folder splits.
        val_count: Training images held out for validation (0, the paper's protocol:
            none; the ``val`` split is then empty).
        split_file: A JSON split file (from :meth:`SegmentationDataset.split_record`) whose
            lists replace the protocol's; ``val_count`` and the seeds are then ignored.
        skip_missing: With ``split_file``: entries of ``split`` that the folder no longer
            holds (or holds with listing problems, e.g. a mask gone) are left out and
            described in the dataset's ``unavailable`` instead of refusing the split.
        listing_errors: If given, problems found while listing the folder (a mask
            missing ...) are appended to it instead of raised, and the split holds the
            entries listed without problems (the check before training).

    Returns:
        A ``torch.utils.data.Dataset`` of :class:`~odssam.data.sample.Sample`.

    Raises:
        OdsSamError: For an unknown name/split/category, a folder with problems, or an
            empty split.
    """
    get_spec(name)
    if split not in SPLIT_NAMES:
        raise OdsSamError(f"unknown split '{split}'; choose one of {', '.join(SPLIT_NAMES)}")
    if image_size is not None and (not isinstance(image_size, int) or image_size <= 0):
        raise OdsSamError(f"image_size must be a positive integer or None, got {image_size!r}")
    options = IndexOptions(include_good=include_good, split_seed=split_seed, test_fraction=test_fraction)
    index = index_dataset(name, root, category, options)
    base_split = "test" if split == "test" else "train"
    tolerated = skip_missing and split_file is not None
    error_scope = None if index.shared_pool or split_file else base_split
    if listing_errors is not None:
        listing_errors.extend(index.errors(error_scope))
    elif not tolerated:
        _raise_for_errors(index, error_scope, root)
    if base_split not in index.splits:
        if name == "pranet" and base_split == "test":
            raise OdsSamError(
                f"the pranet test split needs a test set: category = one of {', '.join(PRANET_TEST_SETS)}"
            )
        raise OdsSamError(f"{root}: no {base_split} split found for {name}")
    unavailable: list[tuple[str, str]] = []
    if split_file is not None:
        partition, pools, dropped = _partition_from_file(index, split_file, name, split if tolerated else None)
        entries = [pools[split][n] for n in partition[split]]
        problems = "; ".join(str(issue) for issue in index.errors(base_split))  # why, if the listing says
        where = f"listed in {split_file}, not found in {root}" + (f" (listing problems: {problems})" if problems else "")
        unavailable = [(n, where) for n in dropped]
    else:
        train_names, val_names = hold_out_validation(
            [entry.name for entry in index.splits["train"]], val_count, split_seed
        )
        partition = {
            "train": train_names,
            "val": val_names,
            "test": [entry.name for entry in index.splits.get("test", [])],
        }
        lookup = {entry.name: entry for entry in index.splits[base_split]}
        entries = [lookup[n] for n in partition[split]]
    if not entries:
        hints = [str(issue) for issue in index.issues if issue.split in (None, base_split)]
        raise EmptySplitError(
            f"{name} dataset at {root}: the {split} split is empty"
            + (f" ({'; '.join(hints[:3])})" if hints else "")
        )
    protocol = {
        **index.protocol,
        "val_count": len(partition["val"]),
        "split_seed": split_seed,
        "image_size": image_size,
    }
    if split_file is not None:
        protocol["split_file"] = str(split_file)
    return SegmentationDataset(index, split, entries, partition, image_size, protocol, unavailable)
