"""The CUDA-graph inference forward: the same outputs as the eager model, bit for bit, on a GPU;
a plain call on the CPU; the predictor, ``odssam predict`` and the cache build wired to it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_ellipse, random_rgb, tiny_model_config

from odssam.cli.main import build_parser
from odssam.config import with_overrides
from odssam.data.sample import Sample
from odssam.engine import cache as cache_module
from odssam.engine.cache import CacheParams, EmbeddingCache, build_embedding_cache
from odssam.inference import Predictor
from odssam.inference.batch import BatchInference, one_in_flight
from odssam.inference.graphed_forward import WARMUP_CALLS, GraphedForward
from odssam.models.ods_sam import build_ods_sam
from odssam.utils.device import autocast

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
BATCH = 3
# Full batches, then a partial last one: warm-up, capture, replays, one eager call.
BATCH_SIZES = [BATCH] * (WARMUP_CALLS + 3) + [2]


def tiny_model(scan_backend: str, device: str):
    """configs/tiny.yaml's model (random weights); the reference scan can be captured, the chunked one cannot."""
    torch.manual_seed(0)
    cfg = with_overrides(tiny_model_config(), {"prompt_encoder.ssm.scan_backend": scan_backend}, "model.")
    model = build_ods_sam(cfg).to(device).eval()
    return model.set_channels_last(device == "cuda")  # as the predictor does on a GPU


def model_inputs(sizes: list[int], device: str) -> list[torch.Tensor]:
    """One Bx3x256x256 float32 input per batch size, different in every batch."""
    generator = torch.Generator().manual_seed(7)
    return [torch.randn(size, 3, 256, 256, generator=generator).to(device) for size in sizes]


@pytest.fixture(scope="module")
def cuda_model():
    return tiny_model("reference", "cuda")


def graphed_and_eager(model, amp_dtype) -> tuple[BatchInference, BatchInference]:
    """The same model on CUDA with and without the graph."""
    cuda = torch.device("cuda")
    return BatchInference(model, cuda, amp_dtype, cuda_graph=True), BatchInference(model, cuda, amp_dtype)


# --------------------------------------------------------------------------- CUDA: same outputs


@needs_cuda
@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_graphed_model_forward_equals_the_eager_forward_bit_for_bit(cuda_model, amp_dtype):
    graphed, eager = graphed_and_eager(cuda_model, amp_dtype)
    xs = model_inputs(BATCH_SIZES, "cuda")
    # All outputs are kept until the end: a later replay must not overwrite an earlier batch's.
    kept = [graphed.graphed_forward(x) for x in xs]
    forward = graphed.graphed_forward
    assert forward.graph is not None and forward.capture_failure is None
    assert forward.replays == len(BATCH_SIZES) - WARMUP_CALLS - 1 and forward.eager_calls == WARMUP_CALLS + 1
    for x, logits in zip(xs, kept):
        with torch.no_grad(), autocast(torch.device("cuda"), amp_dtype):
            reference = cuda_model(x)
        assert logits.shape == reference.shape and logits.dtype == reference.dtype
        assert torch.equal(logits, reference)
    # The same through probabilities() with one batch in flight, as predict and eval run it.
    sizes = [(256, 256)] * BATCH, [(100, 130)] * BATCH

    def launch(x):
        return graphed.probabilities(x, sizes[0][: len(x)], sizes[1][: len(x)])

    for x, (maps, maxima) in one_in_flight(xs, launch, lambda pending: pending.wait_with_maxima()):
        expected, expected_maxima = eager.probabilities(x, sizes[0][: len(x)], sizes[1][: len(x)]).wait_with_maxima()
        assert maxima == expected_maxima
        assert all(np.array_equal(got, want) for got, want in zip(maps, expected))


@needs_cuda
@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_graphed_encode_equals_the_eager_encoder_bit_for_bit(cuda_model, amp_dtype):
    graphed, eager = graphed_and_eager(cuda_model, amp_dtype)
    xs = model_inputs(BATCH_SIZES, "cuda")
    kept = [graphed.encode(x) for x in xs]
    assert graphed.graphed_encode.graph is not None and graphed.graphed_encode.replays > 0
    for x, parts in zip(xs, kept):
        reference = eager.encode(x)
        assert isinstance(parts, tuple) and len(parts) == len(reference)
        for part, expected in zip(parts, reference):
            assert part.dtype == expected.dtype and torch.equal(part, expected)


@needs_cuda
def test_outputs_of_a_batch_are_not_overwritten_by_the_next_replays():
    forward = GraphedForward(lambda x: (x * 2, x.sum(dim=1)))
    xs = [torch.full((4, 5), float(value), device="cuda") for value in range(8)]
    kept = [forward(x) for x in xs]
    assert forward.replays == len(xs) - WARMUP_CALLS
    for value, (doubled, summed) in enumerate(kept):
        assert torch.equal(doubled, torch.full((4, 5), 2.0 * value, device="cuda"))
        assert torch.equal(summed, torch.full((4,), 5.0 * value, device="cuda"))
    assert all(doubled.data_ptr() != forward.static_outputs[0].data_ptr() for doubled, _ in kept)


@needs_cuda
def test_another_shape_runs_eagerly_and_the_captured_one_still_replays():
    forward = GraphedForward(lambda x: x + 1, warmup=1)
    full, partial = torch.zeros(4, 2, device="cuda"), torch.ones(3, 2, device="cuda")
    for _ in range(3):
        assert torch.equal(forward(full), full + 1)
    assert torch.equal(forward(partial), partial + 1)
    assert torch.equal(forward(full + 5), full + 6)  # the captured shape again: replayed on the new values
    assert forward.static_signature[0] == (4, 2) and forward.eager_calls == 2 and forward.replays == 3


@needs_cuda
def test_a_function_that_syncs_the_host_falls_back_to_eager_with_one_message():
    said = []

    def doubled_after_a_host_read(x):
        if x.sum().item() > 1e30:  # reads a value on the host: cannot be recorded in a graph
            raise AssertionError
        return x * 2

    forward = GraphedForward(doubled_after_a_host_read, name="test forward", warmup=1, say=said.append)
    outputs = [forward(torch.full((2, 3), float(value), device="cuda")) for value in range(4)]
    assert forward.graph is None and forward.capture_failure and forward.eager_calls == 4
    assert [output[0, 0].item() for output in outputs] == [0.0, 2.0, 4.0, 6.0]
    assert len(said) == 1 and said[0].startswith("test forward: eager") and "CUDA graph" in said[0]
    # CUDA still works normally after the failed capture.
    assert torch.equal(torch.ones(2, device="cuda") * 3, torch.full((2,), 3.0, device="cuda"))


@needs_cuda
def test_a_model_whose_scan_plans_on_the_host_stays_eager_with_the_same_maps(caplog):
    model = tiny_model("chunked", "cuda")
    with caplog.at_level(logging.WARNING, logger="odssam"):
        graphed = BatchInference(model, torch.device("cuda"), cuda_graph=True)
        eager = BatchInference(model, torch.device("cuda"))
        sizes = [(256, 256)] * BATCH
        for x in model_inputs(BATCH_SIZES, "cuda"):
            got = graphed.probabilities(x, sizes[: len(x)], sizes[: len(x)]).wait()
            want = eager.probabilities(x, sizes[: len(x)], sizes[: len(x)]).wait()
            assert all(np.array_equal(a, b) for a, b in zip(got, want))
    # Not tried (the model says so up front): no half-recorded capture, no warning.
    assert graphed.graphed_forward is None and "chunked selective scan" in graphed.eager_reason
    assert graphed.graphed_encode is not None  # SAM's encoder alone can still be recorded
    assert not [record for record in caplog.records if "CUDA graph" in record.getMessage()]


def test_the_model_says_which_forward_cannot_be_recorded():
    cuda = torch.device("cuda")  # asked, not used: no GPU needed
    assert "chunked selective scan" in tiny_model("chunked", "cpu").graph_unsupported_reason(None, cuda)
    assert tiny_model("reference", "cpu").graph_unsupported_reason(None, cuda) is None
    assert tiny_model("chunked", "cpu").graph_unsupported_reason(None, torch.device("cpu")) is None


@needs_cuda
def test_graphed_predictor_gives_the_maps_of_the_eager_predictor(cuda_model):
    rng = np.random.default_rng(3)
    images = [random_rgb(rng, 40 + 3 * index, 56 - 2 * index) for index in range(2 * (WARMUP_CALLS + 2) + 1)]
    results = {}
    for cuda_graph in (True, False):
        predictor = Predictor(cuda_model, device="cuda", batch_size=2, num_workers=2, cuda_graph=cuda_graph)
        results[cuda_graph] = predictor.predict_batch(images)
        if cuda_graph:
            assert predictor.inference.graphed_forward.replays > 0
        else:
            assert predictor.inference.graphed_forward is None
    for graphed, eager in zip(results[True], results[False]):
        assert np.array_equal(graphed.probability, eager.probability) and graphed.score == eager.score


# --------------------------------------------------------------------------- the cache build, CPU and CUDA


def cache_samples(count: int) -> list[Sample]:
    rng = np.random.default_rng(5)
    samples = []
    for index in range(count):
        height, width = 40 + index % 3 * 7, 56 - index % 2 * 9
        mask = random_ellipse((height, width), rng, centre=(0.3, 0.7), radius=(0.15, 0.3))
        name = f"s{index:02d}"
        samples.append(Sample(random_rgb(rng, height, width), mask, name, (height, width), f"{name}.png"))
    return samples


def cache_files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_graphed_cache_build_writes_the_files_of_the_eager_build(device, tmp_path, monkeypatch):
    model = tiny_model("chunked", device)  # only the frozen encoder runs
    params = CacheParams(model.frozen_fingerprint(), model.image_size, model.prompt_input_size, model.logit_size)
    samples = cache_samples(sum(BATCH_SIZES))
    made = []

    def recorded(*args, **kwargs):
        made.append(BatchInference(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(cache_module, "BatchInference", recorded)
    files = {}
    for cuda_graph in (True, False):
        root = tmp_path / f"graph_{cuda_graph}"
        amp = torch.bfloat16 if device == "cuda" else None
        build_embedding_cache(
            model, samples, EmbeddingCache(root, params), batch_size=BATCH, autocast_dtype=amp, cuda_graph=cuda_graph
        )
        files[cuda_graph] = cache_files(root)
    assert files[True] and files[True] == files[False]
    graphed, eager = made
    assert eager.graphed_encode is None
    if device == "cuda":
        assert graphed.graphed_encode.replays == len(BATCH_SIZES) - WARMUP_CALLS - 1
    else:
        assert graphed.graphed_encode is None  # nothing to record on the CPU


# --------------------------------------------------------------------------- CPU: a plain call, the flags


def test_on_the_cpu_the_wrapper_is_a_plain_call():
    calls = []
    answer = torch.arange(3.0)

    def function(x):
        calls.append(x)
        return answer

    forward = GraphedForward(function, warmup=1)
    x = torch.zeros(2)
    results = [forward(x) for _ in range(4)]
    assert all(result is answer for result in results) and len(calls) == 4 and all(c is x for c in calls)
    assert forward.graph is None and forward.stream is None and forward.eager_calls == 0 and forward.replays == 0


def test_a_graphed_function_must_return_tensors():
    with pytest.raises(TypeError, match="tensor or a tuple of tensors"):
        GraphedForward(lambda x: (x, "not a tensor"))(torch.zeros(1))


def test_batch_inference_on_the_cpu_records_no_graph_and_gives_the_same_maps():
    model = tiny_model("chunked", "cpu")
    torch.set_num_threads(1)
    inference = BatchInference(model, torch.device("cpu"), cuda_graph=True)
    assert inference.graphed_forward is None and inference.graphed_encode is None
    x = model_inputs([2], "cpu")[0]
    sizes = [(256, 256)] * 2
    got = inference.probabilities(x, sizes, sizes).wait()
    want = BatchInference(model, torch.device("cpu")).probabilities(x, sizes, sizes).wait()
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_the_predictor_keeps_one_inference_object_and_takes_the_flag():
    model = tiny_model("chunked", "cpu")
    default = Predictor(model, device="cpu", num_workers=0)
    assert default.cuda_graph is True and default.inference is default.inference
    eager = Predictor(model, device="cpu", num_workers=0, cuda_graph=False)
    assert eager.cuda_graph is False and eager.inference.graphed_forward is None
    image = random_rgb(np.random.default_rng(2), 30, 44)
    assert np.array_equal(eager.predict(image).probability, default.predict(image).probability)


def test_no_cuda_graph_flag_parses_and_reaches_the_predictor(tiny_checkpoint, tmp_path, monkeypatch):
    predict = ["predict", "--checkpoint", "c.pt", "images/", "--output", "out"]
    assert build_parser().parse_args(predict).cuda_graph is True
    assert build_parser().parse_args([*predict, "--no-cuda-graph"]).cuda_graph is False
    help_text = " ".join(next(
        action.help for action in _predict_parser()._actions if "--no-cuda-graph" in action.option_strings
    ).split())
    assert "default" in help_text and "CUDA graph" in help_text

    from PIL import Image

    from odssam.cli.main import main

    Image.fromarray(random_rgb(np.random.default_rng(0), 24, 32)).save(tmp_path / "one.png")
    seen = []
    original = Predictor.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("cuda_graph"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "__init__", spy)
    args = ["predict", "--checkpoint", str(tiny_checkpoint), str(tmp_path / "one.png"), "--output", str(tmp_path / "o")]
    assert main([*args, "--device", "cpu", "--workers", "0", "--no-progress", "--no-cuda-graph"]) == 0
    assert seen == [False]


def _predict_parser():
    import argparse

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["predict"]
    raise AssertionError("no predict command")
