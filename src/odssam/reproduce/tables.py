"""The paper's tables as data: rows, columns, metrics and the experiments behind each cell.

Layouts follow the paper: Table 1 has the 15 MVTec AD categories (in the paper's order)
as columns and its two metrics as rows; Tables 2-6 have one row per method or ablation
variant and, per dataset, a Dice and an IoU column; Table 7 has parameters and GFLOPs of
the learnable modules. Every experiment is one paper config (see
:mod:`odssam.reproduce.configs`) trained into its own run folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from odssam.errors import OdsSamError

# Table 1's column order: its caption's list of categories ('metal nut' -> metal_nut).
MVTEC_PAPER_ORDER = (
    "pill", "cable", "capsule", "tile", "transistor", "carpet", "wood", "hazelnut",
    "leather", "screw", "metal_nut", "toothbrush", "zipper", "bottle", "grid",
)  # fmt: skip
MEAN_COLUMN = "Mean"


@dataclass(frozen=True)
class MetricColumn:
    """A metric as the paper prints it.

    Attributes:
        key: Metric key in a run's ``report.json`` (and in ``paper_results.csv``).
        label: The paper's header (``Dice(%)``, ``MAE↓``).
        percent: Our value (a fraction) is multiplied by 100 to match the paper.
    """

    key: str
    label: str
    percent: bool


@dataclass(frozen=True)
class Experiment:
    """One training run behind some cells of a table.

    Attributes:
        run: Run folder name under ``<output>/<table>/``.
        config: Paper config, relative to the config folder.
        dataset: Registry name of the dataset it trains on.
        row: The table row its results fill.
        column: The column of its single test result; ``None``: each test result fills
            the column of its own name (PraNet's test sets).
        category: ``data.category`` (MVTec AD category).
        data_config: A config whose ``data`` section replaces ``config``'s (the ablation
            configs are written for MoNuSeg; their GlaS runs take ``glas.yaml``'s data).
    """

    run: str
    config: str
    dataset: str
    row: str
    column: str | None = None
    category: str | None = None
    data_config: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """One paper table.

    Attributes:
        name: ``table1`` .. ``table7``.
        caption: The paper's caption.
        corner: Header of the row-label column.
        rows: Row labels (the paper's), in order.
        columns: ``(key, header)`` per dataset/category column: ``key`` matches the
            experiment's column or test-result name and ``paper_results.csv``; ``header``
            is what the paper prints.
        metrics: The metrics of each column.
        metrics_as_rows: Table 1's layout: one row per method and metric (``Our MAE↓``),
            categories as columns.
        experiments: The runs to train (none for Table 7).
        mean_column: Add the unweighted mean over the columns (Table 1).
    """

    name: str
    caption: str
    corner: str
    rows: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    metrics: tuple[MetricColumn, ...]
    metrics_as_rows: bool = False
    experiments: tuple[Experiment, ...] = ()
    mean_column: bool = False


DICE_IOU = (MetricColumn("dice@0.5", "Dice(%)", True), MetricColumn("iou@0.5", "IoU(%)", True))
MEDICAL_COLUMNS = (("MoNuSeg", "MoNuSeg"), ("GlaS", "GlaS"))
MEDICAL_DATA = {"MoNuSeg": ("monuseg", "monuseg.yaml"), "GlaS": ("glas", "glas.yaml")}


def _ablation(name: str, caption: str, corner: str, rows: dict[str, str]) -> TableSpec:
    """A MoNuSeg + GlaS ablation table: row label -> ablation config stem."""
    experiments = tuple(
        Experiment(
            run=f"{stem}_{dataset}",
            config=f"ablations/{stem}.yaml",
            dataset=dataset,
            row=row,
            column=column,
            data_config=data_config,
        )
        for row, stem in rows.items()
        for column, (dataset, data_config) in MEDICAL_DATA.items()
    )
    return TableSpec(name, caption, corner, tuple(rows), MEDICAL_COLUMNS, DICE_IOU, experiments=experiments)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "table1",
            "Table 1: Quantitative results on MVTec AD (one model per category)",
            "Method",
            ("Our",),
            tuple((category, category) for category in MVTEC_PAPER_ORDER),
            (MetricColumn("MAE", "MAE↓", False), MetricColumn("meanEm", "mE↑", False)),
            metrics_as_rows=True,
            experiments=tuple(
                Experiment(f"mvtec_{c}", "mvtec_ad.yaml", "mvtec", "Our", column=c, category=c)
                for c in MVTEC_PAPER_ORDER
            ),
            mean_column=True,
        ),
        TableSpec(
            "table2",
            "Table 2: Kvasir, Clinic, Colon and ETIS (PraNet's protocol: one model trained on its 1450 images)",
            "Method",
            ("Ours",),
            (("Kvasir", "Kvasir"), ("CVC-ClinicDB", "Clinic"), ("CVC-ColonDB", "Colon"), ("ETIS-LaribPolypDB", "ETIS")),
            (MetricColumn("meanDic", "Dice(%)", True), MetricColumn("meanIoU", "IoU(%)", True)),
            experiments=(Experiment("polyp_pranet", "polyp_pranet.yaml", "pranet", "Ours"),),
        ),
        TableSpec(
            "table3",
            "Table 3: MoNuSeg and GlaS",
            "Method",
            ("Our",),
            MEDICAL_COLUMNS,
            DICE_IOU,
            experiments=tuple(
                Experiment(dataset, config, dataset, "Our", column=column)
                for column, (dataset, config) in MEDICAL_DATA.items()
            ),
        ),
        _ablation(
            "table4",
            "Table 4: Effectiveness of each proposed component on MoNuSeg and GlaS",
            "Components",
            {
                "SAM": "sam_basic_prompt",
                "SAM + OD-SSM": "odssm",
                "SAM + OD Conv": "odconv",
                "SAM + OD-SSM + OD Conv": "odssm_odconv",
            },
        ),
        _ablation(
            "table5",
            "Table 5: Impact of different OD Conv quantities on MoNuSeg and GlaS",
            "OD Conv",
            {"1": "odconv_1", "2": "odconv_2", "3": "odconv_3"},
        ),
        _ablation(
            "table6",
            "Table 6: Impact of different OD-SSM quantities on MoNuSeg and GlaS",
            "OD-SSM",
            {"1": "odssm_1", "2": "odssm_2", "3": "odssm_3"},
        ),
        TableSpec(
            "table7",
            "Table 7: Time and space complexity of the learnable modules",
            "Methods",
            ("Our ODSSAM",),
            (("learnable modules", "learnable modules"),),
            (
                MetricColumn("GFLOPs", "Time complexity (GFLOPs)", False),
                MetricColumn("GMACs", "GMACs", False),
                MetricColumn("params_M", "Parameters (10⁶)", False),
            ),
        ),
    )
}
# Table 7 profiles the full model of this config (no training).
PROFILE_CONFIG = "monuseg.yaml"


def get_table(name: str) -> TableSpec:
    """The spec of ``name`` (``table1`` .. ``table7``).

    Raises:
        OdsSamError: For an unknown table.
    """
    spec = TABLES.get(name.lower())
    if spec is None:
        raise OdsSamError(f"unknown table '{name}'; choose one of {', '.join(TABLES)}")
    return spec
