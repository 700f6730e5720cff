"""The CUDA-graph training step: when it is used, and (on a GPU) that it trains as the eager step does."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import graph_reason

from odssam.config import with_overrides
from odssam.engine.graphed_step import WARMUP_STEPS, GraphedStep, graph_unsupported_reason
from odssam.engine.trainer import train

CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    "change, device, world_size, cached, reason",
    [
        ({}, CUDA, 1, True, None),
        ({}, torch.device("cpu"), 1, True, "CPU"),
        ({}, CUDA, 2, True, None),
        ({}, CUDA, 1, False, "embedding cache"),
        ({"lr_schedule": "cosine"}, CUDA, 1, True, "cosine"),
        ({"odconv_temperature_anneal": 5}, CUDA, 1, True, "annealed"),
        ({"compile": True}, CUDA, 1, True, "compile"),
        ({"max_steps": WARMUP_STEPS}, CUDA, 1, True, "too short"),
        ({"max_steps": WARMUP_STEPS + 1}, CUDA, 2, True, "too short"),
    ],
)
def test_graph_is_used_only_where_the_step_is_static(tiny_config, change, device, world_size, cached, reason):
    # The reference scan is capturable; the chunked one is not.
    changes = {"model.prompt_encoder.ssm.scan_backend": "reference", **{f"train.{k}": v for k, v in change.items()}}
    got = graph_reason(with_overrides(tiny_config, changes), device, world_size, cached)
    assert got is None if reason is None else reason in got


def test_chunked_scan_on_cuda_keeps_the_step_eager(tiny_config):
    assert tiny_config.model.prompt_encoder.ssm.scan_backend == "chunked"
    reason = graph_reason(tiny_config, CUDA, 1, True)
    assert reason is not None and "scan_backend" in reason


def test_the_model_decides_its_own_reasons_and_the_engine_reports_them(tiny_config):
    annealed = with_overrides(tiny_config, {"train.odconv_temperature_anneal": 5})
    assert graph_unsupported_reason(annealed, CUDA, 1, True, None) is None  # annealing is the model's to judge
    assert graph_unsupported_reason(annealed, CUDA, 1, True, "the model changes") == "the model changes"
    assert "CPU" in graph_unsupported_reason(annealed, torch.device("cpu"), 1, True, "the model changes")


def test_cpu_training_says_nothing_about_graphs(tiny_config, capsys):
    train(with_overrides(tiny_config, {"train.epochs": 1, "train.final_eval": False}), device="cpu", progress=False)
    assert "CUDA graph" not in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_step_trains_like_the_eager_step():
    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.GELU(), torch.nn.Conv2d(8, 1, 1)
        ).cuda()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True, capturable=True)

        def step(x, target):
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                out = model(x.float())
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

        return model, step

    generator = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(4, 3, 16, 16, generator=generator).half(), (torch.rand(4, 1, 16, 16, generator=generator) > 0.5).float())
        for _ in range(WARMUP_STEPS + 4)
    ]
    batches.append((batches[0][0][:2], batches[0][1][:2]))  # a partial last batch runs eagerly
    eager_model, eager_step = make()
    eager_losses = [eager_step(x.cuda(), t.cuda()).item() for x, t in batches]
    graph_model, step = make()
    graphed = GraphedStep(step)
    graph_losses = [graphed(x, t).item() for x, t in batches]
    assert graphed.graph is not None and graphed.eager_steps == WARMUP_STEPS + 1
    assert graph_losses == pytest.approx(eager_losses, rel=1e-5, abs=1e-6)
    for eager, graph in zip(eager_model.state_dict().values(), graph_model.state_dict().values()):
        torch.testing.assert_close(graph, eager)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_step_that_cannot_be_captured_runs_eagerly_with_one_line(capsys):
    weight = torch.ones(3, device="cuda", requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.1)

    def step(x):
        loss = (weight * x).sum()
        if loss.item() > 1e9:  # reads a value on the host: cannot be recorded in a graph
            raise AssertionError
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    graphed = GraphedStep(step, warmup=1)
    x = torch.ones(3)
    losses = [graphed(x).item() for _ in range(4)]
    assert graphed.graph is None and graphed.capture_failure and graphed.eager_steps == 4
    assert losses == pytest.approx([3.0, 2.7, 2.4, 2.1])
    lines = [line for line in capsys.readouterr().out.splitlines() if "CUDA graph" in line]
    assert len(lines) == 1 and "eager" in lines[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_training_raises_no_stream_mismatch_warning(tiny_config, recwarn):
    changes = {"model.prompt_encoder.ssm.scan_backend": "auto", "train.epochs": 3, "train.final_eval": False}
    train(with_overrides(tiny_config, changes), device="cuda", progress=False)  # auto: Triton on CUDA, capturable
    messages = [str(w.message) for w in recwarn]
    assert not [m for m in messages if "stream" in m.lower()], messages


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_batch_of_another_layout_runs_eagerly():
    weight = torch.ones((), device="cuda", requires_grad=True)
    seen = []

    def step(x, layout):
        seen.append(layout)
        return (weight * x[..., : layout[0]]).sum()

    graphed = GraphedStep(step, warmup=1)
    x = torch.arange(4.0).view(1, 4)
    graphed(x, layout=(2,))  # eager warm-up
    assert graphed(x, layout=(2,)).item() == 1.0  # captured with layout (2,)
    assert graphed(x, layout=(3,)).item() == 3.0  # another layout: eager, not the graph
    assert graphed(x, layout=(2,)).item() == 1.0 and graphed.eager_steps == 2
    assert graphed.static_layout == (2,)
