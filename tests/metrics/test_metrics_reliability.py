"""``odssam metrics`` on bad inputs: every readable pair scored, the rest listed, never a hang.

The folders are generated (seeded, 40x52 maps): damaged files, special files (pipes,
sockets, devices, broken links, link loops, folders named like images), size mismatches,
NaN maps, ambiguous names, non-binary masks and unmatched files, next to good pairs whose
scores must come out as if they had been scored alone.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import save_image
from metrics_samples import realistic_pair
from PIL import Image

from odssam.cli.main import main
from odssam.errors import OdsSamError
from odssam.inference.io import PredictionWriter, probability_to_uint8
from odssam.inference.predictor import Prediction
from odssam.metrics.evaluator import Evaluator
from odssam.metrics.folders import evaluate_folders, mask_from_array
from odssam.metrics.map_files import InputError, open_regular_file, read_map

SHAPE = (40, 52)
GOOD = ("good0", "good1", "good2")


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail instead of hanging if a read ever blocks (on a named pipe, say)."""

    def hung(signum, frame):
        raise TimeoutError("metrics blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _metrics(capsys, *argv: str) -> tuple[int, str, list[str]]:
    """Run ``odssam metrics``: ``(exit code, stdout, stderr lines)``; stderr never holds a traceback."""
    code = main(["metrics", "--quiet", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err.splitlines()


def _skipped(lines: list[str]) -> dict[str, str]:
    """File name -> reason of each 'skipped: PATH: REASON' line."""
    listed = {}
    for line in lines:
        if line.startswith("skipped: "):
            path, reason = line[len("skipped: "):].split(": ", 1)
            listed[Path(path).name] = reason
    return listed


def _write_good(pred_dir: Path, gt_dir: Path, rng: np.random.Generator) -> None:
    for name in GOOD:
        pred, gt = realistic_pair(SHAPE, rng)
        save_image(pred, pred_dir / f"{name}.png")
        save_image(gt, gt_dir / f"{name}.png")


def _gt(gt_dir: Path, name: str, rng: np.random.Generator) -> None:
    save_image(realistic_pair(SHAPE, rng)[1], gt_dir / f"{name}.png")


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _make_socket(path: Path) -> None:
    # AF_UNIX paths are limited to ~108 bytes: bind by a short relative name.
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        server = socket.socket(socket.AF_UNIX)
        server.bind(path.name)
        server.close()  # the socket file stays
    finally:
        os.chdir(cwd)


def _messy_folders(root: Path, rng: np.random.Generator) -> tuple[Path, Path, dict[str, str]]:
    """Good pairs plus one of each bad input; returns the folders and file name -> expected reason."""
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    _write_good(pred_dir, gt_dir, rng)
    expected = {}

    good_png = _png_bytes(realistic_pair(SHAPE, rng)[0])
    (pred_dir / "garbage.png").write_bytes(good_png[:8] + rng.bytes(200))
    (pred_dir / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    save_image(np.zeros((10, 10), np.uint8), pred_dir / "small.png")
    nan_map = rng.random(SHAPE).astype(np.float32)
    nan_map[3, 4] = np.nan
    np.save(pred_dir / "nan.npy", nan_map)
    np.save(pred_dir / "inf.npy", np.full(SHAPE, np.inf, np.float32))
    np.save(pred_dir / "above_one.npy", np.full(SHAPE, 1.5, np.float32))
    save_image(realistic_pair(SHAPE, rng)[0], pred_dir / "dup.png")
    np.save(pred_dir / "dup.npy", rng.random(SHAPE).astype(np.float32))
    for name in ("garbage", "truncated", "small", "nan", "inf", "above_one", "dup"):
        _gt(gt_dir, name, rng)
    expected.update({
        "garbage.png": "cannot read image", "truncated.png": "cannot read image",
        "small.png": "prediction is 10x10 but ground truth", "nan.npy": "NaN or infinite",
        "inf.npy": "NaN or infinite", "above_one.npy": "must lie in [0, 1]",
        "dup.png": "2 prediction files match the name 'dup' (dup.npy, dup.png)",
        "dup.npy": "2 prediction files match the name 'dup' (dup.npy, dup.png)",
    })

    # Special entries named like maps, in the prediction folder (their ground truths are fine).
    os.mkfifo(pred_dir / "fifo.png")
    _make_socket(pred_dir / "sock.png")
    (pred_dir / "device.png").symlink_to(os.devnull)
    (pred_dir / "broken.png").symlink_to(root / "nowhere.png")
    (pred_dir / "loop.png").symlink_to(pred_dir / "loop.png")
    (pred_dir / "folder.png").mkdir()
    for name in ("fifo", "sock", "device", "broken", "loop", "folder"):
        _gt(gt_dir, name, rng)
    expected.update({
        "fifo.png": "a named pipe (FIFO), not a regular file", "sock.png": "a socket, not a regular file",
        "device.png": "a character device, not a regular file", "broken.png": "broken symbolic link",
        "loop.png": "symbolic link loop", "folder.png": "a folder named like an image file",
    })

    # Bad ground truths (their predictions are fine): a pipe, and masks that are not 0/255.
    os.mkfifo(gt_dir / "gt_fifo.png")
    save_image(np.where(realistic_pair(SHAPE, rng)[1] > 0, 100, 0).astype(np.uint8), gt_dir / "hundred.png")
    save_image(rng.integers(0, 6, SHAPE, dtype=np.uint8), gt_dir / "labels.png")
    red = np.zeros((*SHAPE, 3), np.uint8)
    red[10:20, 10:30, 0] = 255
    save_image(red, gt_dir / "red.png")
    for name in ("gt_fifo", "hundred", "labels", "red"):
        save_image(realistic_pair(SHAPE, rng)[0], pred_dir / f"{name}.png")
    not_binary = "not a binary mask at threshold 127"
    expected.update({"gt_fifo.png": "a named pipe (FIFO)", "hundred.png": not_binary, "labels.png": not_binary,
                     "red.png": not_binary})

    # Unmatched files.
    save_image(realistic_pair(SHAPE, rng)[0], pred_dir / "orphan.png")
    _gt(gt_dir, "lonely", rng)
    expected.update({"orphan.png": "no ground truth named 'orphan'", "lonely.png": "no prediction named 'lonely'"})
    return pred_dir, gt_dir, expected


def _values_alone(tmp_path: Path, pred_dir: Path, gt_dir: Path, capsys) -> dict:
    clean_pred, clean_gt = tmp_path / "alone" / "pred", tmp_path / "alone" / "gt"
    clean_pred.mkdir(parents=True)
    clean_gt.mkdir(parents=True)
    for name in GOOD:
        shutil.copy(pred_dir / f"{name}.png", clean_pred)
        shutil.copy(gt_dir / f"{name}.png", clean_gt)
    code, out, _ = _metrics(capsys, "--pred", str(clean_pred), "--gt", str(clean_gt), "--json", "--dataset", "x",
                            "--metrics", "default,auroc")
    assert code == 0
    return json.loads(out)["results"][0]


def test_bad_inputs_are_listed_and_good_pairs_score_as_if_alone(tmp_path, rng, capsys):
    pred_dir, gt_dir, expected = _messy_folders(tmp_path, rng)
    out_dir = tmp_path / "reports"
    code, out, err = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--json", "--dataset", "x",
                              "--metrics", "default,auroc", "--out", str(out_dir))
    assert code == 1
    listed = _skipped(err)
    assert sorted(listed) == sorted(expected)  # one line per bad input, no more
    for name, reason in expected.items():
        assert reason in listed[name], (name, listed[name])
    assert "--gt-threshold" in listed["labels.png"]
    assert f"{len(expected)} input(s) could not be scored and were skipped" in err[-1]
    mixed = json.loads(out)["results"][0]
    assert mixed["n_images"] == len(GOOD)
    assert sorted(p.name for p in out_dir.iterdir()) == ["x.csv", "x.json", "x.md"]  # the report is still written
    alone = _values_alone(tmp_path, pred_dir, gt_dir, capsys)
    assert mixed["values"] == alone["values"]


def test_strict_stops_at_the_first_problem_with_one_line(tmp_path, rng, capsys):
    pred_dir, gt_dir, expected = _messy_folders(tmp_path, rng)
    out_dir = tmp_path / "reports"
    code, out, err = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--strict", "--out", str(out_dir))
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("odssam metrics: error: ")
    assert any(f"{name}: {reason}" in err[0] for name, reason in expected.items())
    assert not out_dir.exists()


def test_nothing_scored_is_exit_2_with_the_list(tmp_path, rng, capsys):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    (pred_dir / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(64))
    os.mkfifo(pred_dir / "pipe.png")
    _gt(gt_dir, "bad", rng)
    _gt(gt_dir, "pipe", rng)
    code, out, err = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir))
    assert code == 2 and out == ""
    assert sorted(_skipped(err)) == ["bad.png", "pipe.png"]
    assert err[-1] == "odssam metrics: error: nothing could be scored: 2 input(s) skipped (listed above)"


def _damaged_variants(png: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    """Seeded damage: truncations, flipped bytes, a bad chunk length, an absurd size in IHDR."""
    variants = []
    for index in range(count):
        data = bytearray(png)
        kind = index % 4
        if kind == 0:
            data = data[: int(rng.integers(8, len(data) - 1))]
        elif kind == 1:
            for position in rng.integers(8, len(data), size=int(rng.integers(1, 9))):
                data[position] ^= int(rng.integers(1, 256))
        elif kind == 2:
            data[8:12] = int(rng.integers(2**24, 2**31)).to_bytes(4, "big")  # IHDR length
        else:
            ihdr = bytes(data[12:16]) + (60000).to_bytes(4, "big") * 2 + bytes(data[24:29])
            data[16:29] = ihdr[4:]
            data[29:33] = zlib.crc32(ihdr).to_bytes(4, "big")  # valid CRC: PIL believes the size
        variants.append(bytes(data))
    return variants


def test_damaged_pngs_are_scored_or_listed_never_a_traceback(tmp_path, rng, capsys):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred, gt = realistic_pair(SHAPE, rng)
    variants = _damaged_variants(_png_bytes(pred), rng, 24)
    pred_dir.mkdir()
    for index, data in enumerate(variants):
        path = pred_dir / f"damaged{index:02d}.png"
        path.write_bytes(data)
        save_image(gt, gt_dir / path.name)
        try:
            read_map(path)
        except InputError as error:  # the only exception a damaged file may raise
            assert str(error).startswith(f"{path}: ")
    _write_good(pred_dir, gt_dir, rng)
    code, out, err = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--json")
    listed = _skipped(err)
    assert listed and code == 1
    assert all(name.startswith("damaged") and "cannot read image" in reason for name, reason in listed.items())
    assert json.loads(out)["results"][0]["n_images"] + len(listed) == len(variants) + len(GOOD)


def test_reads_never_open_special_files(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(InputError, match=r"pipe.png: a named pipe \(FIFO\), not a regular file: not read"):
        read_map(tmp_path / "pipe.png")  # returns at once, even without the folder check
    with pytest.raises(InputError, match="a character device"):
        open_regular_file(Path(os.devnull))
    (tmp_path / "loop.npy").symlink_to(tmp_path / "loop.npy")
    with pytest.raises(InputError, match="loop.npy: symbolic link loop"):
        read_map(tmp_path / "loop.npy")


def _predict_output(root: Path, probabilities: dict[str, np.ndarray], fmt: str) -> Path:
    out = root / f"predict_{fmt}"
    with PredictionWriter(out, probability_format=fmt, overlays=False, workers=0) as writer:
        for name, probability in probabilities.items():
            mask = probability > 0.5
            writer.submit(Prediction(name, probability, mask, float(probability.max()), float(mask.mean())))
    return out


@pytest.mark.parametrize("fmt", ["npy", "png", "none"])
def test_predict_output_folder_is_scored_as_it_is(tmp_path, rng, capsys, fmt):
    gt_dir = tmp_path / "gt"
    probabilities, evaluator = {}, Evaluator(metrics="mae,dice,mdice")
    for name in ("a", "b"):
        pred, gt = realistic_pair(SHAPE, rng)
        probabilities[name] = (pred / 255.0 + rng.normal(0, 0.01, SHAPE)).clip(0, 1).astype(np.float32)
        save_image(gt, gt_dir / f"{name}.jpg", quality=95)
        scored = {"npy": probabilities[name], "png": probability_to_uint8(probabilities[name]),
                  "none": probabilities[name] > 0.5}[fmt]
        evaluator.update(scored, gt > 127)
    out = _predict_output(tmp_path, probabilities, fmt)
    code = main(["metrics", "--pred", str(out), "--gt", str(gt_dir), "--metrics", "mae,dice,mdice", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "'odssam predict' output folder" in captured.err
    assert ("binary masks" in captured.err) == (fmt == "none")
    result = json.loads(captured.out)["results"][0]
    assert result["n_images"] == 2
    assert result["values"] == pytest.approx(evaluator.compute().values, rel=1e-12, abs=1e-15)


def test_masks_not_binary_at_the_threshold_are_refused_with_a_hint(tmp_path, rng, capsys):
    path = Path("m.png")
    gt = realistic_pair(SHAPE, rng)[1] > 0
    for array in (gt.astype(np.uint8), gt.astype(np.uint8) * 100, gt.astype(np.uint16) * 100 * 257,
                  gt.astype(np.float32) * 0.3):
        with pytest.raises(InputError, match="not a binary mask at threshold 127.*--gt-threshold"):
            mask_from_array(array, path)
    with pytest.raises(InputError, match="ground truth holds NaN"):
        mask_from_array(np.full(SHAPE, np.nan, np.float32), path)
    assert not mask_from_array(np.zeros(SHAPE, np.uint8), path).any()  # an empty mask is fine
    np.testing.assert_array_equal(mask_from_array(gt.astype(np.uint8), path, threshold=0), gt)
    # An empty JPEG mask with faint compression noise is an empty mask, not a refused one.
    faint = np.zeros(SHAPE, np.uint8)
    faint[5:9, 5:9] = 12
    assert not mask_from_array(faint, Path("m.jpg")).any()
    with pytest.raises(InputError, match="values reach 12"):
        mask_from_array(faint, Path("m.png"))
    # From the command line: a 0/1 mask is refused at the default threshold, scored at 0.
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    _write_good(pred_dir, gt_dir, rng)
    save_image(realistic_pair(SHAPE, rng)[0], pred_dir / "ones.png")
    save_image(gt.astype(np.uint8), gt_dir / "ones.png")
    code, _, err = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir))
    assert code == 1 and list(_skipped(err)) == ["ones.png"]
    code, out, _ = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--gt-threshold", "0", "--json")
    assert code == 0 and json.loads(out)["results"][0]["n_images"] == len(GOOD) + 1


def test_ambiguous_ground_truth_and_a_pipe_beside_a_readable_file(tmp_path, rng, capsys):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    _write_good(pred_dir, gt_dir, rng)
    save_image(realistic_pair(SHAPE, rng)[0], pred_dir / "twice.png")
    _gt(gt_dir, "twice", rng)
    save_image(realistic_pair(SHAPE, rng)[1], gt_dir / "twice.bmp")
    os.mkfifo(pred_dir / "good0.tif")  # a pipe next to good0.png: listed, good0.png still scored
    code, out, err = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--json")
    listed = _skipped(err)
    assert code == 1 and sorted(listed) == ["good0.tif", "twice.bmp", "twice.png"]
    assert "2 ground-truth files match the name 'twice'" in listed["twice.png"]
    assert json.loads(out)["results"][0]["n_images"] == len(GOOD)


def test_recursive_walk_survives_a_folder_loop(tmp_path, rng, capsys):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    for sub in ("crack", "cut.png"):  # a folder named like an image is walked with --recursive
        pred, gt = realistic_pair(SHAPE, rng)
        save_image(pred, pred_dir / sub / "000.png")
        save_image(gt, gt_dir / sub / "000_mask.png")
    (pred_dir / "crack" / "up").symlink_to(pred_dir)
    code, out, err = _metrics(capsys, "--pred", str(pred_dir), "--gt", str(gt_dir), "--recursive",
                              "--gt-suffix", "_mask", "--json")
    assert code == 1 and _skipped(err) == {"up": "link to a folder already read (a loop): not followed"}
    assert json.loads(out)["results"][0]["n_images"] == 2


def test_help_documents_exit_codes_and_strict(capsys):
    with pytest.raises(SystemExit):
        main(["metrics", "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and "--strict" in text and ".npy" in text
    for code in ("0  every input was scored", "1  some inputs could not be scored", "2  usage error"):
        assert code in text


def test_library_lists_problems_unless_strict(tmp_path, rng):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    _write_good(pred_dir, gt_dir, rng)
    (pred_dir / "bad.npy").write_bytes(b"not an array")
    _gt(gt_dir, "bad", rng)
    score = evaluate_folders(pred_dir, gt_dir, name="x", metrics="mae")
    assert score.result.n_images == len(GOOD) and [p.path.name for p in score.problems] == ["bad.npy"]
    with pytest.raises(OdsSamError, match="bad.npy: cannot read array"):
        evaluate_folders(pred_dir, gt_dir, name="x", metrics="mae", strict=True)
