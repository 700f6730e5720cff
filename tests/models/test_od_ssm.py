"""OD-SSM: cross-scan / cross-merge orders, SS2D and the residual block."""

import dataclasses
import math

import pytest
import torch

from odssam.config import SSMConfig, with_overrides
from odssam.errors import OdsSamError
from odssam.models import od_ssm
from odssam.models.od_ssm import SS2D, ODSSMBlock, cross_merge, cross_scan, scan_orders, ss2d_scan_flops

SMALL = SSMConfig(d_state=4, dt_rank=2, expand=2, chunk_size=8)


def small_block(directions=4, backend="chunked", dim=8, seed=0):
    torch.manual_seed(seed)
    return ODSSMBlock(dim, dataclasses.replace(SMALL, directions=directions, scan_backend=backend))


@pytest.mark.parametrize("directions", [4, 8])
@pytest.mark.parametrize("size", [(4, 4), (3, 5), (1, 6)])
def test_every_direction_is_a_permutation_undone_by_merge(directions, size):
    height, width = size
    ones = torch.ones(2, 3, height, width)
    merged = cross_merge(cross_scan(ones, directions), height, width)
    torch.testing.assert_close(merged, torch.full((2, 3, height * width), float(directions)))
    x = torch.randn(2, 3, height, width)
    scanned = cross_scan(x, directions)
    assert scanned.shape == (2, directions, 3, height * width)
    for k in range(directions):
        torch.testing.assert_close(scanned[:, k].sort(-1).values, x.flatten(2).sort(-1).values)
    torch.testing.assert_close(cross_merge(scanned, height, width), directions * x.flatten(2))


@pytest.mark.parametrize("directions", [4, 8])
def test_second_half_of_the_directions_reverses_the_first(directions):
    order, inverse = scan_orders(3, 5, directions)
    half = directions // 2
    torch.testing.assert_close(order[half:], order[:half].flip(-1))
    for k in range(directions):
        torch.testing.assert_close(order[k][inverse[k]], torch.arange(15))


def test_row_and_column_orders_match_vmamba():
    x = torch.randn(1, 2, 3, 4)
    scanned = cross_scan(x, 4)
    torch.testing.assert_close(scanned[:, 0], x.flatten(2))
    torch.testing.assert_close(scanned[:, 1], x.transpose(2, 3).flatten(2))
    torch.testing.assert_close(scanned[:, 2], x.flatten(2).flip(-1))
    torch.testing.assert_close(scanned[:, 3], x.transpose(2, 3).flatten(2).flip(-1))


def test_diagonal_orders_by_hand_on_a_3x4_grid():
    # Row-major positions of a 3x4 grid:   0  1  2  3
    #                                      4  5  6  7
    #                                      8  9 10 11
    order, _ = scan_orders(3, 4, 8)
    anti_diagonals = [0, 1, 4, 2, 5, 8, 3, 6, 9, 7, 10, 11]  # i + j = 0, 1, ..., 5
    main_diagonals = [3, 2, 7, 1, 6, 11, 0, 5, 10, 4, 9, 8]  # j - i = 3, 2, ..., -2
    assert order[2].tolist() == anti_diagonals
    assert order[3].tolist() == main_diagonals
    assert order[6].tolist() == anti_diagonals[::-1]
    assert order[7].tolist() == main_diagonals[::-1]
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert cross_scan(x, 8)[0, 2, 0].tolist() == [float(p) for p in anti_diagonals]


def test_scan_orders_are_cached():
    assert scan_orders(5, 7, 8)[0] is scan_orders(5, 7, 8)[0]


def test_unsupported_direction_count_is_a_user_error():
    with pytest.raises(OdsSamError, match="directions"):  # refused when the config is built
        SS2D(8, with_overrides(SMALL, {"directions": 6}, "model.prompt_encoder.ssm."))
    with pytest.raises(OdsSamError, match="directions"):  # and by the scan itself, which takes primitives
        cross_scan(torch.zeros(1, 2, 3, 3), 6)


@pytest.mark.parametrize("directions", [4, 8])
def test_block_forward_shape_and_finite_on_non_square_input(directions):
    block = small_block(directions)
    x = torch.randn(2, 8, 5, 7)
    y = block(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert not torch.allclose(y, x)


def test_every_parameter_receives_a_gradient():
    block = small_block(directions=8)
    block(torch.randn(2, 8, 4, 6)).square().mean().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_reference_and_chunked_backends_give_the_same_block():
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    outputs, grads = [], []
    for backend in ("reference", "chunked"):
        block = small_block(directions=8, backend=backend).double()
        xi = x.clone().requires_grad_()
        y = block(xi)
        y.sum().backward()
        outputs.append(y.detach())
        grads.append([xi.grad] + [p.grad for p in block.parameters()])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-8, atol=1e-10)
    for chunked, reference in zip(grads[1], grads[0]):
        torch.testing.assert_close(chunked, reference, rtol=1e-8, atol=1e-10)


def test_scan_gets_grouped_fp32_inputs_under_autocast(monkeypatch):
    seen = {}
    real_scan = od_ssm.selective_scan

    def spy(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **kwargs):
        seen.update(dtypes={t.dtype for t in (u, delta, A, B, C, D, delta_bias)}, B=B.shape, u=u.shape)
        seen.update(softplus=delta_softplus, backend=kwargs["backend"], checkpoint=kwargs["checkpoint"])
        return real_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, **kwargs)

    monkeypatch.setattr(od_ssm, "selective_scan", spy)
    block = small_block(directions=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(torch.randn(1, 8, 3, 4))
    assert torch.isfinite(y.float()).all()
    assert seen["dtypes"] == {torch.float32}
    assert seen["u"] == (1, 4 * 16, 12) and seen["B"] == (1, 4, 4, 12)
    assert seen["softplus"] is True and seen["backend"] == "chunked" and seen["checkpoint"] is True


def test_initialisation_follows_mamba():
    cfg = dataclasses.replace(SMALL, d_state=6, dt_rank=3)
    ss2d = SS2D(16, cfg)
    k, d_inner = cfg.directions, 32
    assert ss2d.x_proj_weight.shape == (k, 3 + 2 * 6, d_inner)
    assert ss2d.dt_projs_weight.shape == (k, d_inner, 3)
    assert ss2d.dt_projs_bias.shape == (k, d_inner)
    torch.testing.assert_close(-torch.exp(ss2d.A_logs), -torch.arange(1.0, 7.0).expand(k * d_inner, 6))
    torch.testing.assert_close(ss2d.Ds, torch.ones(k * d_inner))
    assert ss2d.dt_projs_weight.abs().max() <= 3**-0.5
    dt = torch.nn.functional.softplus(ss2d.dt_projs_bias)
    assert dt.min() >= cfg.dt_min * (1 - 1e-4) and dt.max() <= cfg.dt_max * (1 + 1e-4)


def test_default_parameter_count_is_about_057m():
    ss2d = SS2D(256, SSMConfig())
    d_model, d_inner, k, n, r = 256, 512, 4, 16, 16
    expected = (
        d_model * 2 * d_inner  # in_proj
        + d_inner * 9 + d_inner  # depthwise conv
        + k * (r + 2 * n) * d_inner  # x_proj
        + k * (d_inner * r + d_inner)  # dt_proj
        + k * d_inner * n + k * d_inner  # A_logs, Ds
        + 2 * d_inner  # out_norm
        + d_inner * d_model  # out_proj
    )
    count = sum(p.numel() for p in ss2d.parameters())
    assert count == expected
    assert math.isclose(count / 1e6, 0.57, rel_tol=0.01)


def test_block_builds_and_runs_on_the_meta_device():
    with torch.device("meta"):
        block = ODSSMBlock(256, SSMConfig(directions=8))
        y = block(torch.empty(1, 256, 64, 64))
    assert y.shape == (1, 256, 64, 64)


def test_scan_flops():
    assert ss2d_scan_flops(1, 64, 64, SSMConfig()) == 9 * 4096 * 512 * 16 * 4
    assert ss2d_scan_flops(2, 8, 4, SSMConfig(directions=8, expand=1, d_state=4), d_model=16) == 2 * 9 * 32 * 16 * 4 * 8


def test_scan_orders_cached_under_inference_mode_serve_training():
    with torch.inference_mode():
        cross_scan(torch.randn(1, 2, 5, 7), 8)
    x = torch.randn(1, 2, 5, 7, requires_grad=True)
    cross_merge(cross_scan(x, 8), 5, 7).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 8.0))
