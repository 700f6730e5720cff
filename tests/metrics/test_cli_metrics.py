"""``odssam metrics`` and folder scoring on generated PNG/JPEG/TIFF folders."""

import json

import numpy as np
import pytest
import tifffile
from metrics_samples import realistic_pair
from PIL import Image

from odssam.cli.main import main
from odssam.errors import OdsSamError
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.folders import evaluate_folders, match_folders, prediction_from_array, read_map


def _write_dataset(root, rng, names=("a", "b", "c"), gt_format="jpg", shape=(40, 52)):
    pred_dir, gt_dir = root / "pred", root / "Kvasir" / "masks"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    pairs = {}
    for name in names:
        pred, gt = realistic_pair(shape, rng)
        Image.fromarray(pred).save(pred_dir / f"{name}.png")
        if gt_format == "jpg":
            # JPEG masks are RGB with compression noise, as Kvasir-SEG ships them.
            Image.fromarray(np.stack([gt] * 3, axis=-1)).save(gt_dir / f"{name}.jpg", quality=90)
        else:
            Image.fromarray(gt).save(gt_dir / f"{name}.png")
        pairs[name] = (pred, gt)
    return pred_dir, gt_dir, pairs


def test_cli_prints_paper_style_table_matching_the_evaluator(tmp_path, rng, capsys):
    pred_dir, gt_dir, pairs = _write_dataset(tmp_path, rng, gt_format="png")
    assert main(["metrics", "--pred", str(pred_dir), "--gt", str(gt_dir), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| Metric | Kvasir |")  # name taken from above the generic "masks" folder
    evaluator = Evaluator()
    for pred, gt in pairs.values():
        evaluator.update(pred, gt > 127)
    expected = evaluator.compute().values
    assert f"| mE↑ | {expected['meanEm']:.3f} |" in table
    assert f"| Dice@0.5↑ | {expected['dice@0.5']:.3f} |" in table
    assert "meanDic (`meanDic`): PraNet" in table


def test_cli_json_and_report_files(tmp_path, rng, capsys):
    pred_dir, gt_dir, _ = _write_dataset(tmp_path, rng)
    out = tmp_path / "reports"
    argv = ["metrics", "--pred", str(pred_dir), "--gt", str(gt_dir), "--dataset", "kvasir test",
            "--metrics", "mae,dice,auroc", "--json", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["results"][0]["name"] == "kvasir test"
    assert data["results"][0]["n_images"] == 3
    assert set(data["results"][0]["values"]) == {"MAE", "dice@0.5", "pixel_AUROC"}
    assert "images/s" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["kvasir_test.csv", "kvasir_test.json", "kvasir_test.md"]


def test_cli_combine_reports_into_one_table_with_mean(tmp_path, rng, capsys):
    reports = []
    for category in ("bottle", "cable"):
        pred_dir, gt_dir, _ = _write_dataset(tmp_path / category, rng, gt_format="png")
        assert main(["metrics", "--pred", str(pred_dir), "--gt", str(gt_dir), "--dataset", category,
                     "--metrics", "mae,emeasure", "--out", str(tmp_path / "r"), "--quiet"]) == 0
        reports.append(str(tmp_path / "r" / f"{category}.json"))
    capsys.readouterr()
    assert main(["metrics", "--combine", *reports]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "| Metric | bottle | cable | Mean |"


def test_unmatched_files_and_size_mismatch_are_clear_errors(tmp_path, rng, capsys):
    pred_dir, gt_dir, _ = _write_dataset(tmp_path, rng, gt_format="png")
    (gt_dir / "c.png").rename(gt_dir / "zz.png")
    with pytest.raises(OdsSamError, match=r"1 prediction\(s\) without ground truth .*: c"):
        match_folders(pred_dir, gt_dir)
    (pred_dir / "c.png").unlink()
    with pytest.raises(OdsSamError, match=r"1 ground truth\(s\) without prediction .*: zz .*--partial"):
        match_folders(pred_dir, gt_dir)
    pairs, skipped = match_folders(pred_dir, gt_dir, partial=True)
    assert [p.key for p in pairs] == ["a", "b"] and skipped == 1

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pred_dir / "zz.png")
    # The mismatched pair is listed and skipped; the other two are scored (exit code 1).
    assert main(["metrics", "--pred", str(pred_dir), "--gt", str(gt_dir), "--quiet", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["results"][0]["n_images"] == 2
    assert "zz.png: prediction is 10x10 but ground truth" in captured.err and "40x52" in captured.err
    assert "Traceback" not in captured.err
    assert main(["metrics", "--pred", str(pred_dir), "--gt", str(gt_dir), "--quiet", "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "zz.png: prediction is 10x10" in err


def test_missing_folder_and_duplicate_stems(tmp_path, rng, capsys):
    pred_dir, gt_dir, _ = _write_dataset(tmp_path, rng, gt_format="png")
    assert main(["metrics", "--pred", str(tmp_path / "nope"), "--gt", str(gt_dir)]) == 2
    assert "nope: prediction folder does not exist" in capsys.readouterr().err
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(pred_dir / "a.jpg")
    with pytest.raises(OdsSamError, match=r"2 prediction files match the name 'a' \(a.jpg, a.png\)"):
        match_folders(pred_dir, gt_dir)
    assert main(["metrics", "--pred", str(pred_dir)]) == 2
    assert "--pred and --gt are both required" in capsys.readouterr().err


def test_recursive_matching_with_mask_suffix_like_mvtec(tmp_path, rng):
    for defect in ("crack", "cut"):
        (tmp_path / "pred" / defect).mkdir(parents=True)
        (tmp_path / "gt" / defect).mkdir(parents=True)
        pred, gt = realistic_pair((20, 20), rng)
        Image.fromarray(pred).save(tmp_path / "pred" / defect / "000.png")
        Image.fromarray(gt).save(tmp_path / "gt" / defect / "000_mask.png")
    score = evaluate_folders(tmp_path / "pred", tmp_path / "gt", name="bottle", recursive=True, gt_suffix="_mask",
                             metrics="mae,aupro")
    assert score.result.n_images == 2
    assert 0 < score.result.values["pixel_AUPRO"] <= 1

    # Defect-free images have no mask file: an error unless scored against empty masks.
    (tmp_path / "pred" / "good").mkdir()
    Image.fromarray(np.full((20, 20), 250, np.uint8)).save(tmp_path / "pred" / "good" / "000.png")
    with pytest.raises(OdsSamError, match="good/000 .*--missing-gt-empty"):
        match_folders(tmp_path / "pred", tmp_path / "gt", recursive=True, gt_suffix="_mask")
    with_good = evaluate_folders(tmp_path / "pred", tmp_path / "gt", name="bottle", recursive=True,
                                 gt_suffix="_mask", metrics="mae,aupro", missing_gt_empty=True)
    assert with_good.result.n_images == 3
    # A confident false alarm on the good image raises the FPR, lowering AUPRO.
    assert with_good.result.values["pixel_AUPRO"] < score.result.values["pixel_AUPRO"]


def test_read_map_formats(tmp_path):
    rgb_tiff = tmp_path / "gt.tif"
    mask = np.zeros((6, 7, 3), np.uint8)
    mask[2:4, 2:5] = 255
    tifffile.imwrite(rgb_tiff, mask, photometric="rgb")
    assert (read_map(rgb_tiff) > 127).sum() == 6
    sixteen = tmp_path / "p16.png"
    Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(sixteen)
    assert read_map(sixteen).dtype == np.uint16
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(OdsSamError, match="broken.png: cannot read image"):
        read_map(broken)


def test_prediction_maps_become_probabilities_or_errors_naming_the_file(tmp_path):
    path = tmp_path / "p.tif"
    np.testing.assert_allclose(prediction_from_array(np.array([[0, 51, 255]], np.uint8), path), [[0.0, 0.2, 1.0]])
    with pytest.raises(OdsSamError, match=r"p.tif: prediction values must lie in \[0, 1\]"):
        prediction_from_array(np.full((2, 2), 1.5, np.float32), path)
    with pytest.raises(OdsSamError, match="p.tif: prediction holds NaN"):
        prediction_from_array(np.full((2, 2), np.nan, np.float32), path)
    with pytest.raises(OdsSamError, match="p.tif: prediction must be float"):
        prediction_from_array(np.zeros((2, 2), np.int32), path)
