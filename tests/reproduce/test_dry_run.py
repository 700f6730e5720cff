"""``odssam reproduce TABLE --dry-run``: every table's runs, datasets and split sizes, nothing trained."""

import shutil

import pytest
from reproduce_helpers import set_arguments
from data_layouts import make_glas, make_monuseg, make_mvtec, make_pranet

from odssam.cli.main import main
from odssam.config import to_dict
from odssam.reproduce.configs import config_dir
from odssam.reproduce.runner import plan_table
from odssam.reproduce.tables import MVTEC_PAPER_ORDER, get_table


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Every layout the tables read, under the names the README documents."""
    import numpy as np

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("datasets")
    make_monuseg(root / "MoNuSeg", rng)
    make_glas(root / "GlaS", rng)
    make_pranet(root / "PraNet", rng)
    for category in ("bottle", "grid"):
        make_mvtec(root / "MVTec-AD", rng, category)
    return root


def _dry_run(capsys, table, data_root, tmp_path, *extra):
    code = main(["reproduce", table, "--data-root", str(data_root), "--output", str(tmp_path), "--dry-run", *extra])
    out = capsys.readouterr().out
    assert code == 0
    assert not tmp_path.exists() or not any(tmp_path.iterdir()), "a dry run writes nothing"
    return out


def _row(out: str, run: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"| {run} |"))


def test_table1_lists_15_categories_and_the_missing_ones(capsys, data_root, tmp_path):
    out = _dry_run(capsys, "table1", data_root, tmp_path, "--set", "data.val_count=0")
    for category in MVTEC_PAPER_ORDER:
        assert f"| mvtec_{category} | " in out
    assert _row(out, "mvtec_bottle").endswith(f"| mvtec/bottle | {data_root / 'MVTec-AD'} | train 3, test 4 | new |")
    assert "MISSING" in _row(out, "mvtec_pill") and "MISSING" not in _row(out, "mvtec_grid")
    missing = out.split("missing datasets")[1]
    assert missing.count("  - mvtec/") == 13 and "mvtec/bottle" not in missing


def test_table2_one_pranet_run_scored_on_each_test_set(capsys, data_root, tmp_path):
    out = _dry_run(capsys, "table2", data_root, tmp_path, "--set", "data.val_count=1")
    row = _row(out, "polyp_pranet")
    assert "polyp_pranet.yaml" in row and str(data_root / "PraNet") in row
    assert "train 2, val 1, test:Kvasir 1, test:CVC-ClinicDB 2, test:CVC-ColonDB 1, test:ETIS-LaribPolypDB 2" in row


def test_table2_with_a_test_set_missing(capsys, data_root, tmp_path):
    partial = tmp_path / "data"
    shutil.copytree(data_root / "PraNet", partial / "PraNet")
    shutil.rmtree(partial / "PraNet" / "TestDataset" / "CVC-ColonDB")
    out = _dry_run(capsys, "table2", partial, tmp_path / "out", "--set", "data.val_count=0")
    assert "missing test sets: CVC-ColonDB" in _row(out, "polyp_pranet")
    assert "pranet test set CVC-ColonDB (run polyp_pranet)" in out


def test_table3_and_ablations(capsys, data_root, tmp_path):
    out = _dry_run(capsys, "table3", data_root, tmp_path, "--set", "data.val_count=0")
    assert _row(out, "monuseg").endswith(f"| monuseg | {data_root / 'MoNuSeg'} | train 2, test 1 | new |")
    assert _row(out, "glas").endswith(f"| glas | {data_root / 'GlaS'} | train 3, test 3 | new |")
    for table, count in (("table4", 8), ("table5", 6), ("table6", 6)):
        out = _dry_run(capsys, table, data_root, tmp_path, "--set", "data.val_count=0")
        rows = [line for line in out.splitlines() if line.endswith("| new |")]
        assert len(rows) == count
        assert sum("| glas |" in line for line in rows) == count // 2


def test_table7_needs_no_data(capsys, tmp_path):
    assert main(["reproduce", "table7", "--output", str(tmp_path), "--dry-run"]) == 0
    assert "no training" in capsys.readouterr().out


def test_ablation_runs_on_glas_take_the_glas_data_section(data_root, tmp_path):
    runs = plan_table(get_table("table5"), data_root, tmp_path, config_dir(), ["data.val_count=0"])
    glas = {run.experiment.run: run.config for run in runs if run.experiment.dataset == "glas"}
    assert sorted(glas) == ["odconv_1_glas", "odconv_2_glas", "odconv_3_glas"]
    glas_data = config_dir() / "glas.yaml"
    for cfg in glas.values():
        assert (cfg.data.dataset, cfg.data.image_size, cfg.data.root) == ("glas", 224, str(data_root / "GlaS"))
    import yaml

    expected = yaml.safe_load(glas_data.read_text())["data"]
    assert glas["odconv_3_glas"].data.split_seed == expected.get("split_seed", 0)
    assert glas["odconv_3_glas"].model.prompt_encoder.odconv.num_layers == 3


def test_set_and_sam_checkpoint_apply_to_every_run(data_root, tmp_path):
    overrides = ["train.epochs=3", "model.prompt_encoder.ssm.directions=8"]
    runs = plan_table(get_table("table4"), data_root, tmp_path, config_dir(), overrides, "weights/sam.pth")
    assert len(runs) == 8
    for run in runs:
        cfg = to_dict(run.config)
        assert cfg["train"]["epochs"] == 3
        assert cfg["model"]["prompt_encoder"]["ssm"]["directions"] == 8
        assert cfg["model"]["sam"]["checkpoint"] == "weights/sam.pth"
        assert cfg["train"]["run_name"] == run.run_dir.name and run.run_dir.parent == tmp_path / "table4"


def test_random_weights_banner_in_the_dry_run(capsys, data_root, tmp_path):
    sets = set_arguments(["model.sam.checkpoint=null", "data.val_count=0"])
    out = _dry_run(capsys, "table3", data_root, tmp_path, *sets)
    assert "RANDOM WEIGHTS (SAM in monuseg, glas" in out


def test_errors(capsys, tmp_path):
    assert main(["reproduce", "table3", "--output", str(tmp_path)]) == 2
    assert "give --data-root" in capsys.readouterr().err
    assert main(["reproduce", "table3", "--data-root", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["reproduce", "table3", "--data-root", str(tmp_path), "--set", "train.nonsense=1", "--dry-run"]) == 2
    assert "train.nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "table9"])
