"""``odssam predict`` on a generated folder: outputs at original sizes, CSV rows, a skipped bad file."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import read_pixels
from inference_helpers import FOLDER_IMAGES

from odssam.cli.main import main
from odssam.inference import read_predictions_csv


def _predict(checkpoint, inputs, output, *extra):
    args = ["predict", "--checkpoint", str(checkpoint), *map(str, inputs), "--output", str(output)]
    return main([*args, "--device", "cpu", "--batch-size", "2", "--workers", "2", "--no-progress", *extra])


@pytest.fixture(scope="module")
def predicted(tiny_checkpoint, image_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("predicted")
    code = _predict(tiny_checkpoint, [image_folder], output)
    return code, output


def test_every_readable_image_gets_its_outputs_at_original_size(predicted):
    _, output = predicted
    for name, size in FOLDER_IMAGES.items():
        mask = read_pixels(output / "masks" / f"{name}.png")
        probability = read_pixels(output / "probabilities" / f"{name}.png")
        overlay = read_pixels(output / "overlays" / f"{name}.png")
        assert mask.shape == probability.shape == size, name
        assert overlay.shape == size + (3,), name
        assert set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, probability > 127.5)


def test_csv_has_one_row_per_readable_image(predicted, image_folder):
    _, output = predicted
    rows = {row["name"]: row for row in read_predictions_csv(output / "predictions.csv")}
    assert sorted(rows) == sorted(FOLDER_IMAGES)
    for name, (height, width) in FOLDER_IMAGES.items():
        row = rows[name]
        assert (int(row["height"]), int(row["width"])) == (height, width)
        assert 0.0 <= float(row["area_fraction"]) <= 1.0 and 0.0 < float(row["max_score"]) <= 1.0
        mask = read_pixels(output / "masks" / f"{name}.png") == 255
        assert float(row["area_fraction"]) == pytest.approx(mask.mean(), abs=1e-6)
    assert rows["rgb"]["source"] == str(image_folder / "rgb.png")


def test_the_bad_file_is_reported_and_skipped(predicted):
    code, output = predicted
    assert code == 1
    assert not (output / "masks" / "broken.png").exists()


def test_skip_message_names_the_file(tiny_checkpoint, image_folder, tmp_path, capsys):
    code = _predict(tiny_checkpoint, [image_folder / "broken.png", image_folder / "rgb.png"], tmp_path)
    err = capsys.readouterr().err
    assert code == 1
    assert "skipped" in err and "broken.png" in err and "1 of 2 files" in err
    assert (tmp_path / "masks" / "rgb.png").exists()


def test_npy_probabilities_without_overlays_and_exit_code_0(tiny_checkpoint, image_folder, tmp_path):
    code = _predict(
        tiny_checkpoint, [image_folder / "tall.tif"], tmp_path, "--probability-format", "npy", "--no-overlay"
    )
    assert code == 0
    probability = np.load(tmp_path / "probabilities" / "tall.npy")
    assert probability.shape == FOLDER_IMAGES["tall"] and probability.dtype == np.float32
    assert not (tmp_path / "overlays").exists()


def test_missing_input_is_an_error_before_loading_the_model(tmp_path, capsys):
    code = _predict(tmp_path / "no-checkpoint.pt", [tmp_path / "nowhere"], tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and "nowhere" in err and "Traceback" not in err


def test_summary_reports_start_up_apart_from_the_steady_rate(tiny_checkpoint, image_folder, tmp_path, capsys):
    images = [image_folder / name for name in ("rgb.png", "tall.tif", "gray.jpg", "alpha.png", "broken.png")]
    assert _predict(tiny_checkpoint, images, tmp_path) == 1
    line = next(line for line in capsys.readouterr().out.splitlines() if "images predicted" in line)
    match = re.fullmatch(
        r"4 images predicted in ([\d.]+) s \(([\d.]+) img/s\): start-up ([\d.]+) s \(model load ([\d.]+) s, "
        r"first batch ([\d.]+) s\), then ([\d.]+) img/s; outputs in (.+)",
        line,
    )
    assert match, line
    total, _, start_up, load, first_batch, rate, output = match.groups()
    assert float(start_up) <= float(total) + 0.05 and float(rate) > 0 and output == str(tmp_path)
    assert float(start_up) == pytest.approx(float(load) + float(first_batch), abs=0.11)


def test_clock_counts_the_steady_rate_after_the_first_batch(monkeypatch):
    from odssam.cli import predict

    times = iter([10.0, 13.0, 15.0, 17.0])  # start, model loaded, first batch handed over, end
    monkeypatch.setattr(predict.time, "perf_counter", lambda: next(times))
    clock = predict._Clock(first_batch=2)
    clock.model_loaded()
    for ok in (True, True, False, True, True, True):  # batch 2 (of 2 images) is done at 15 s
        clock.result(ok)
    clock.finished()
    assert clock.summary() == (
        "5 images predicted in 7.0 s (0.71 img/s): start-up 5.0 s (model load 3.0 s, first batch 2.0 s), then 1.5 img/s"
    )


def test_clock_of_a_run_shorter_than_one_batch_has_no_steady_rate(monkeypatch):
    from odssam.cli import predict

    times = iter([0.0, 1.0, 4.0])
    monkeypatch.setattr(predict.time, "perf_counter", lambda: next(times))
    clock = predict._Clock(first_batch=8)
    clock.model_loaded()
    for _ in range(3):
        clock.result(True)
    clock.finished()
    assert clock.summary() == "3 images predicted in 4.0 s (0.75 img/s): start-up 4.0 s (model load 1.0 s, first batch 3.0 s)"
