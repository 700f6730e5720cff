"""Export through the frozen-segmenter seam: a segmenter with two embedding parts and SAM 2's
``stretch`` preprocessing, exported, checked part by part, and run by the PyTorch-free runtime."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from helpers import tiny_model_config
from torch import nn

from odssam.errors import OdsSamError
from odssam.export.onnx_export import example_images, export_onnx
from odssam.export.runtime import OnnxPredictor, create_session
from odssam.inference.batch import predict_probabilities
from odssam.models.ods_sam import OdsSam
from odssam.models.registry import build_prompt_network, build_segmenter
from odssam.models.segmenter import Embedding, FrozenSegmenter
from odssam.models.transforms import sam_preprocess

DETAIL_CHANNELS = 8


class TwoPartSegmenter(FrozenSegmenter):
    """The tiny SAM plus a second embedding part, as SAM 2 feeds high-resolution features to its decoder.

    Parts: SAM's Bx256x16x16 prompt grid, then a Bx8x64x64 detail map (a strided convolution
    of the input); the decoder adds the detail map's channel mean to SAM's Bx1x64x64 logits.
    Preprocessing stretches images to 256x256 (SAM 2's ``stretch``).
    """

    def __init__(self, sam: FrozenSegmenter):
        super().__init__()
        self.sam = sam
        stride = sam.image_size // sam.logit_size
        self.detail = nn.Conv2d(3, DETAIL_CHANNELS, kernel_size=stride, stride=stride)
        with torch.no_grad():
            self.detail.weight.mul_(4.0)  # a contribution the logits clearly show
        self.variant = "two_part_test"
        self.preprocess_spec = dataclasses.replace(sam.preprocess_spec, resize="stretch")
        self.freeze()

    @property
    def image_encoder(self) -> nn.Module:
        return self.sam.image_encoder

    def embedding_shapes(self) -> tuple[tuple[int, ...], ...]:
        return (*self.sam.embedding_shapes(), (DETAIL_CHANNELS, self.sam.logit_size, self.sam.logit_size))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Embedding:
        return (*self.sam.encode(x), self.detail(x))

    def decode(self, embedding: Embedding, dense_prompt: torch.Tensor) -> torch.Tensor:
        prompt_grid, detail = embedding
        return self.sam.decode((prompt_grid,), dense_prompt) + detail.mean(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def two_part_model() -> OdsSam:
    cfg = tiny_model_config()
    torch.manual_seed(0)
    segmenter = TwoPartSegmenter(build_segmenter(cfg.sam))
    prompt_encoder = build_prompt_network(cfg.prompt_encoder)
    return OdsSam(segmenter, prompt_encoder, prompt_input_size=cfg.prompt_encoder.input_size).eval()


@pytest.fixture(scope="module")
def two_part_export(two_part_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("two-part-onnx")
    return export_onnx(two_part_model, output, parity_batch=3), output


def test_every_part_is_a_named_graph_output_and_decoder_input(two_part_export):
    _, output = two_part_export
    encoder = onnx.load(str(output / "image_encoder.onnx"), load_external_data=False)
    decoder = onnx.load(str(output / "prompt_decoder.onnx"), load_external_data=False)
    assert [value.name for value in encoder.graph.output] == ["image_embedding", "image_embedding_1"]
    assert [value.name for value in decoder.graph.input] == ["image", "image_embedding", "image_embedding_1"]
    batch_axes = {value.type.tensor_type.shape.dim[0].dim_param for value in [*encoder.graph.output, *decoder.graph.input]}
    assert batch_axes == {"batch"}


def test_metadata_records_the_parts_and_the_preprocessing(two_part_export):
    _, output = two_part_export
    metadata = json.loads((output / "odssam_onnx.json").read_text())
    assert metadata["embedding_parts"] == [
        {"name": "image_embedding", "shape": [256, 16, 16]},
        {"name": "image_embedding_1", "shape": [DETAIL_CHANNELS, 64, 64]},
    ]
    assert metadata["resize"] == "stretch" and "zero-pad" not in metadata["preprocessing"]
    assert metadata["segmenter"] == "two_part_test"
    assert (metadata["image_size"], metadata["embedding_size"], metadata["logit_size"]) == (256, 16, 64)


def test_parity_covers_every_part(two_part_export):
    result, output = two_part_export
    parity = result.parity
    assert parity.batch_size == 3
    assert set(parity.max_abs_diff_embedding_parts) == {"image_embedding", "image_embedding_1"}
    assert parity.max_abs_diff_embedding == max(parity.max_abs_diff_embedding_parts.values()) < 1e-3
    assert parity.max_abs_diff_logits < 1e-3 and parity.max_abs_diff_decoder < 1e-3
    recorded = json.loads((output / "odssam_onnx.json").read_text())["parity"]
    assert recorded["max_abs_diff_embedding_parts"] == parity.max_abs_diff_embedding_parts


def test_decoder_graph_reads_the_second_part(two_part_model, two_part_export):
    _, output = two_part_export
    x, _, _ = sam_preprocess(example_images(2, seed=3), two_part_model.preprocess_spec)
    with torch.no_grad():
        prompt_grid, detail = two_part_model.encode(x)
        without_detail = two_part_model.decode((prompt_grid, torch.zeros_like(detail)), two_part_model.prompt(x))
        with_detail = two_part_model(x)
    decoder = create_session(output / "prompt_decoder.onnx")
    feeds = {"image": x.numpy(), "image_embedding": prompt_grid.numpy()}
    onnx_without = decoder.run(None, {**feeds, "image_embedding_1": np.zeros_like(detail.numpy())})[0]
    onnx_with = decoder.run(None, {**feeds, "image_embedding_1": detail.numpy()})[0]
    assert (with_detail - without_detail).abs().max() > 0.1  # the part matters ...
    assert np.abs(onnx_without - without_detail.numpy()).max() < 1e-3  # ... and the graph uses it
    assert np.abs(onnx_with - with_detail.numpy()).max() < 1e-3


def test_runtime_stretches_like_the_segmenter_and_matches_pytorch(two_part_model, two_part_export):
    _, output = two_part_export
    image = example_images(1, seed=7)[0][:150, :210]  # not square: stretching differs from padding
    predictor = OnnxPredictor(output)
    x, resized, original = predictor.preprocess(image)
    expected_x, _, _ = sam_preprocess([image], two_part_model.preprocess_spec)
    assert resized == (256, 256) and original == (150, 210)
    assert np.abs(x - expected_x.numpy()).max() < 1e-3
    expected = predict_probabilities(two_part_model, [image])[0]
    result = predictor.predict(image)
    assert result.probability.shape == (150, 210)
    assert np.abs(result.probability - expected).max() < 1e-4


def test_runtime_reads_exports_made_before_the_seam(exported, tmp_path):
    # Their metadata has no resize mode and no part list: SAM's padding and one image_embedding.
    _, output = exported
    metadata = json.loads((output / "odssam_onnx.json").read_text())
    assert metadata["embedding_parts"] == [{"name": "image_embedding", "shape": [256, 16, 16]}]
    assert metadata["resize"] == "longest_side"
    old = tmp_path / "old"
    shutil.copytree(output, old)
    for key in ("resize", "embedding_parts", "segmenter"):
        metadata.pop(key)
    (old / "odssam_onnx.json").write_text(json.dumps(metadata))
    image = example_images(1, seed=2)[0][:120, :200]
    old_result, new_result = OnnxPredictor(old).predict(image), OnnxPredictor(output).predict(image)
    assert OnnxPredictor(old).resized_size(120, 200) == (154, 256)
    np.testing.assert_array_equal(old_result.probability, new_result.probability)


def test_unknown_resize_mode_is_a_clear_error(exported, tmp_path):
    _, output = exported
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    metadata = json.loads((copy / "odssam_onnx.json").read_text())
    (copy / "odssam_onnx.json").write_text(json.dumps({**metadata, "resize": "crop"}))
    with pytest.raises(OdsSamError, match="resize 'crop'"):
        OnnxPredictor(copy)
