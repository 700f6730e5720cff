"""ONNX export: files, dynamic batch, onnxruntime parity, the traceable rewrites and the runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from helpers import tiny_model_config

from odssam.cli.main import main
from odssam.config import to_dict, with_overrides
from odssam.checkpoint import load_model_from_checkpoint
from odssam.export.graphs import EXPORT_SCAN_BACKEND, export_friendly
from odssam.export.onnx_export import example_images
from odssam.export.runtime import OnnxPredictor, create_session, resize_bilinear
from odssam.inference import Predictor
from odssam.models.od_ssm import SS2D
from odssam.models.ods_sam import build_ods_sam
from odssam.models.odconv import ODConv2d
from odssam.models.transforms import sam_preprocess


def test_export_writes_checked_graphs_and_metadata(exported):
    code, output = exported
    assert code == 0
    assert sorted(p.name for p in output.iterdir()) == ["image_encoder.onnx", "odssam_onnx.json", "prompt_decoder.onnx"]
    metadata = json.loads((output / "odssam_onnx.json").read_text())
    assert metadata["image_size"] == 256 and metadata["logit_size"] == 64 and metadata["opset"] == 17
    for name in ("image_encoder.onnx", "prompt_decoder.onnx"):
        onnx.checker.check_model(str(output / name))


def test_graphs_carry_the_oldest_ir_version_of_their_opset(exported):
    # Any onnxruntime that runs opset 17 reads IR 8; the onnx package would stamp its own newest.
    _, output = exported
    for name in ("image_encoder.onnx", "prompt_decoder.onnx"):
        model = onnx.load(str(output / name), load_external_data=False)
        assert model.ir_version == 8 < onnx.IR_VERSION


def test_graphs_have_a_dynamic_batch_axis(exported):
    _, output = exported
    decoder = onnx.load(str(output / "prompt_decoder.onnx"), load_external_data=False)
    axes = {value.name: value.type.tensor_type.shape.dim[0].dim_param for value in [*decoder.graph.input, *decoder.graph.output]}
    assert axes == {"image": "batch", "image_embedding": "batch", "logits": "batch"}


def test_parity_is_reported_and_small(exported, capsys):
    _, output = exported
    parity = json.loads((output / "odssam_onnx.json").read_text())["parity"]
    assert parity["batch_size"] == 3
    assert parity["max_abs_diff_logits"] < 1e-3
    assert parity["max_abs_diff_decoder"] < 1e-3
    low, high = parity["logit_range"]
    assert high - low > 0.1  # the comparison is not between two near-constant maps


def test_onnxruntime_matches_pytorch_at_another_batch_size(exported, export_checkpoint):
    _, output = exported
    model, _ = load_model_from_checkpoint(export_checkpoint)
    x, _, _ = sam_preprocess(example_images(4, seed=5), model.image_size)
    with torch.no_grad():
        expected = model(x).numpy()
    encoder = create_session(output / "image_encoder.onnx")
    decoder = create_session(output / "prompt_decoder.onnx")
    embedding = encoder.run(None, {"image": x.numpy()})[0]
    logits = decoder.run(None, {"image": x.numpy(), "image_embedding": embedding})[0]
    assert logits.shape == (4, 1, 64, 64)
    assert np.abs(logits - expected).max() < 1e-3


def test_runtime_without_torch_matches_the_predictor(exported, export_checkpoint):
    _, output = exported
    image = example_images(1, seed=7)[0][:150, :210]  # not square, smaller than SAM's input
    expected = Predictor.from_checkpoint(export_checkpoint, "cpu", num_workers=0).predict(image)
    result = OnnxPredictor(output).predict(image)
    assert result.probability.shape == (150, 210)
    assert np.abs(result.probability - expected.probability).max() < 1e-4
    assert result.score == pytest.approx(expected.score, abs=1e-4)


def test_numpy_resize_matches_torch_bilinear():
    array = np.random.default_rng(0).standard_normal((2, 7, 9)).astype(np.float32)
    for size in [(14, 18), (3, 5), (7, 20)]:
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(array)[None], size=size, mode="bilinear", align_corners=False
        )[0].numpy()
        np.testing.assert_allclose(resize_bilinear(array, *size), expected, atol=1e-6)


def test_export_friendly_restores_the_model(export_checkpoint):
    model, _ = load_model_from_checkpoint(export_checkpoint)
    scans = [m for m in model.modules() if isinstance(m, SS2D)]
    odconvs = [m for m in model.modules() if isinstance(m, ODConv2d)]
    backends = [m.scan_backend for m in scans]
    assert scans and odconvs
    with pytest.raises(RuntimeError, match="boom"):
        with export_friendly(model):
            assert all(m.per_sample == "matmul" for m in odconvs)
            assert all(m.scan_backend == "chunked" for m in scans)
            raise RuntimeError("boom")
    assert all(m.per_sample == "loop" for m in odconvs)
    assert [m.scan_backend for m in scans] == backends


def test_export_friendly_switches_the_modules_not_the_config():
    cfg = with_overrides(tiny_model_config(), {"prompt_encoder.ssm.scan_backend": "reference"}, "model.")
    before = to_dict(cfg)
    model = build_ods_sam(cfg, feature_encoder_weights=False)
    scans = [m for m in model.modules() if isinstance(m, SS2D)]
    assert scans and all(m.scan_backend == "reference" for m in scans)
    with export_friendly(model):
        assert all(m.scan_backend == EXPORT_SCAN_BACKEND != "reference" for m in scans)
        assert to_dict(cfg) == before  # each module holds its own setting
    assert all(m.scan_backend == "reference" for m in scans)
    assert to_dict(cfg) == before and cfg.prompt_encoder.ssm.scan_backend == "reference"


def test_bad_opset_is_a_user_error(export_checkpoint, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(export_checkpoint), "--output", str(tmp_path), "--opset", "9"]) == 2
    assert "opset" in capsys.readouterr().err


def test_large_graph_weights_are_gathered_into_one_data_file(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from odssam.export.onnx_export import _finalise

    weights = {name: np.random.default_rng(i).standard_normal((4, 4)).astype(np.float32) for i, name in enumerate("ab")}
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "a"], ["h"]), helper.make_node("MatMul", ["h", "b"], ["y"])],
        "two_matmuls",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    traced = tmp_path / "traced" / "graph.onnx"
    traced.parent.mkdir()
    # What the exporter leaves for a graph over 2 GB: one file per weight beside the graph.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(traced), save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)
    assert len(list(traced.parent.iterdir())) == 3
    (tmp_path / "final").mkdir()
    written = _finalise(traced, tmp_path / "final")
    assert [p.name for p in written] == ["graph.onnx", "graph.onnx.data"]
    x = np.ones((2, 4), np.float32)
    y = create_session(written[0]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ weights["a"] @ weights["b"], rtol=1e-5)
