"""The ODConv arrangement switch of SSMODC: parallel branches summed, or stacked layers."""

from __future__ import annotations

import pytest
import torch

from odssam.config import ODConvConfig
from odssam.models.ssmodc import DilatedODConv

DIM = 16


def build(num_layers: int, arrangement: str, seed: int = 0) -> DilatedODConv:
    torch.manual_seed(seed)
    return DilatedODConv(DIM, ODConvConfig(num_layers=num_layers, arrangement=arrangement, kernel_num=4, min_channels=4))


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arrangement", ["parallel", "stacked"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_shapes_and_gradients_reach_every_layer(arrangement, num_layers):
    module = build(num_layers, arrangement).train()
    x = torch.randn(2, DIM, 12, 12, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_both_arrangements_have_the_same_parameters(num_layers):
    parallel, stacked = build(num_layers, "parallel"), build(num_layers, "stacked")
    assert parameter_count(parallel) == parameter_count(stacked)
    assert parallel.state_dict().keys() == stacked.state_dict().keys()  # checkpoints load across


def test_one_layer_is_the_same_function_in_both_arrangements():
    parallel, stacked = build(1, "parallel", seed=0).eval(), build(1, "stacked", seed=1).eval()
    stacked.load_state_dict(parallel.state_dict())
    x = torch.randn(2, DIM, 10, 10)
    torch.testing.assert_close(stacked(x), parallel(x))


def test_stacked_layers_compose_and_parallel_branches_sum():
    parallel = build(2, "parallel").eval()
    stacked = build(2, "stacked", seed=3).eval()
    stacked.load_state_dict(parallel.state_dict())
    first, second = parallel.branches
    x = torch.randn(1, DIM, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(parallel(x), first(x) + second(x))
        torch.testing.assert_close(stacked(x), second(first(x)))
        assert not torch.allclose(parallel(x), stacked(x))
