"""Selective scan: the sequential reference, the chunked closed form and the dispatcher."""

import math

import pytest
import torch

from odssam.errors import OdsSamError
from odssam.models import selective_scan as scan_module
from odssam.models.selective_scan import (
    _plan_chunks,
    selective_scan,
    selective_scan_chunked,
    selective_scan_flops,
    selective_scan_ref,
)

OPTION_NAMES = ("D", "z", "delta_bias")


def make_inputs(batch, dim, length, n_state, groups=None, dtype=torch.float64, delta_scale=1.0, seed=0):
    """Random scan inputs; ``groups=None`` gives ungrouped ``b x n x l`` B and C."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    bc_shape = (batch, n_state, length) if groups is None else (batch, groups, n_state, length)
    return {
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length) * delta_scale,
        "A": -torch.rand(dim, n_state, generator=gen, dtype=dtype) * 3 - 0.1,
        "B": randn(*bc_shape),
        "C": randn(*bc_shape),
        "D": randn(dim),
        "z": randn(batch, dim, length),
        "delta_bias": randn(dim) * 0.5,
    }


def values_and_grads(fn, inputs, **kwargs):
    leaves = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
    y = fn(**leaves, **kwargs)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    grads = torch.autograd.grad((y * weights).sum(), list(leaves.values()))
    return y.detach(), dict(zip(leaves, grads))


def assert_same(ref, other, rtol, atol):
    (y_ref, g_ref), (y, g) = ref, other
    torch.testing.assert_close(y, y_ref, rtol=rtol, atol=atol)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=rtol, atol=atol, msg=f"gradient of {name}")


def test_reference_follows_the_recurrence_by_hand():
    u = torch.tensor([[[1.0, 2.0, -1.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 1.0, 2.0]]], dtype=torch.float64)
    A = torch.tensor([[-1.0]], dtype=torch.float64)
    B = torch.tensor([[[2.0, 1.0, 3.0]]], dtype=torch.float64)
    C = torch.tensor([[[1.0, -1.0, 0.5]]], dtype=torch.float64)
    D = torch.tensor([0.25], dtype=torch.float64)
    x, expected = 0.0, []
    for t in range(3):
        d, uu, bb, cc = delta[0, 0, t].item(), u[0, 0, t].item(), B[0, 0, t].item(), C[0, 0, t].item()
        x = math.exp(-d) * x + d * bb * uu
        expected.append(x * cc + 0.25 * uu)
    y = selective_scan_ref(u, delta, A, B, C, D)
    torch.testing.assert_close(y[0, 0], torch.tensor(expected, dtype=torch.float64))


@pytest.fixture(params=["closed_form", "doubling"])
def chunk_solver(request, monkeypatch):
    """Run a test once per way of solving a chunk (a negative spread limit forces doubling)."""
    if request.param == "doubling":
        monkeypatch.setattr(scan_module, "_MAX_LOG_DECAY_SPREAD", -1.0)
    return request.param


@pytest.mark.parametrize("groups", [None, 1, 3])
@pytest.mark.parametrize("options", [(), ("D",), ("z",), ("delta_bias",), OPTION_NAMES])
@pytest.mark.parametrize("softplus", [False, True])
def test_chunked_equals_reference_fp64(groups, options, softplus, chunk_solver):
    inputs = make_inputs(2, 6, 11, 3, groups)
    for name in set(OPTION_NAMES) - set(options):
        del inputs[name]
    ref = values_and_grads(selective_scan_ref, inputs, delta_softplus=softplus)
    chunked = values_and_grads(selective_scan_chunked, inputs, delta_softplus=softplus, chunk_size=4)
    assert_same(ref, chunked, rtol=1e-9, atol=1e-11)


def test_chunked_passes_gradcheck(chunk_solver):
    inputs = make_inputs(1, 4, 7, 2, groups=2)
    tensors = [v.requires_grad_() for v in inputs.values()]

    def scan(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, chunk_size=3)

    assert torch.autograd.gradcheck(scan, tensors, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 7, 32, 500])
def test_chunked_equals_reference_fp32_moderate_size(chunk_size):
    inputs = make_inputs(2, 32, 203, 8, groups=4, dtype=torch.float32)
    ref = values_and_grads(selective_scan_ref, inputs, delta_softplus=True)
    chunked = values_and_grads(selective_scan_chunked, inputs, delta_softplus=True, chunk_size=chunk_size)
    assert_same(ref, chunked, rtol=2e-4, atol=2e-4)


def test_checkpointed_chunks_give_the_same_values_and_gradients(chunk_solver):
    inputs = make_inputs(2, 8, 40, 4, groups=2)
    plain = values_and_grads(selective_scan_chunked, inputs, delta_softplus=True, chunk_size=16)
    checkpointed = values_and_grads(
        selective_scan_chunked, inputs, delta_softplus=True, chunk_size=16, checkpoint=True
    )
    assert_same(plain, checkpointed, rtol=1e-12, atol=1e-12)


def test_steep_decays_do_not_overflow():
    # delta ~ 3 and |A| up to 30: the log-decay falls by up to ~90 per step, so a
    # closed form exp(-cumsum(delta A)) over a 16-step chunk is far beyond fp32's range.
    inputs = make_inputs(2, 8, 48, 4, groups=2, dtype=torch.float32, seed=1)
    inputs["A"] = inputs["A"] * 10
    inputs["delta"] = torch.rand_like(inputs["delta"]) * 3 + 0.5
    naive_factor = torch.exp(-torch.cumsum(inputs["delta"][..., :16, None] * inputs["A"][:, None], dim=-2))
    assert torch.isinf(naive_factor).any()
    exact64 = selective_scan_ref(**{k: v.double() for k, v in inputs.items()})
    ref = values_and_grads(selective_scan_ref, inputs)
    chunked = values_and_grads(selective_scan_chunked, inputs, chunk_size=16)
    assert torch.isfinite(chunked[0]).all()
    assert all(torch.isfinite(g).all() for g in chunked[1].values())
    torch.testing.assert_close(chunked[0].double(), exact64, rtol=1e-4, atol=1e-4)
    assert_same(ref, chunked, rtol=1e-4, atol=1e-4)


def test_only_the_steep_chunks_leave_the_closed_form():
    # ~5 per step from step 40 on: 32-step chunks there would reach ~155, beyond fp32's
    # exp range; the gentle chunks before keep the closed form.
    batch, dim, length, n_state = 2, 4, 100, 2
    inputs = make_inputs(batch, dim, length, n_state, dtype=torch.float32, seed=2)
    inputs["delta"] = torch.full((batch, dim, length), 0.01)
    inputs["delta"][..., 40:] = 1.0
    inputs["A"] = torch.full((dim, n_state), -5.0)
    plan = _plan_chunks(inputs["delta"].view(batch, 1, dim, length), inputs["A"].view(1, dim, n_state), 32)
    assert plan == [(0, 32, True), (32, 64, False), (64, 96, False), (96, 100, True)]
    ref = values_and_grads(selective_scan_ref, inputs)
    chunked = values_and_grads(selective_scan_chunked, inputs, chunk_size=32)
    assert_same(ref, chunked, rtol=1e-4, atol=1e-4)


def test_nan_steps_leave_the_closed_form():
    delta = torch.full((1, 1, 2, 8), 0.01)
    delta[..., 5] = float("nan")
    assert _plan_chunks(delta, -torch.ones(1, 2, 3), 4) == [(0, 4, True), (4, 8, False)]


def test_gentle_decays_keep_the_closed_form_everywhere():
    delta = torch.full((1, 2, 3, 70), 0.01)
    A = -torch.ones(2, 3, 4)
    assert _plan_chunks(delta, A, 32) == [(0, 32, True), (32, 64, True), (64, 70, True)]


def test_half_precision_inputs_are_scanned_in_fp32():
    inputs = make_inputs(1, 4, 20, 3, dtype=torch.float32)
    half = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    expected = selective_scan_ref(**{k: v.float() for k, v in half.items()}, delta_softplus=True)
    for fn in (selective_scan_ref, selective_scan_chunked):
        y = fn(**half, delta_softplus=True)
        assert y.dtype == torch.bfloat16
        torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)


def test_dispatcher_backends_agree():
    inputs = make_inputs(1, 6, 30, 4, groups=3, dtype=torch.float32)
    expected = selective_scan_ref(**inputs, delta_softplus=True)
    for backend in ("reference", "chunked", "auto"):
        y = selective_scan(**inputs, delta_softplus=True, backend=backend, chunk_size=8)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_auto_on_cpu_does_not_use_triton(monkeypatch):
    def triton_must_not_run(*args):
        raise AssertionError("triton backend used for CPU tensors")

    monkeypatch.setattr(scan_module, "_load_triton", lambda: (triton_must_not_run, lambda device: True, ""))
    inputs = make_inputs(1, 2, 5, 2, dtype=torch.float32)
    y = selective_scan(**inputs, backend="auto")
    torch.testing.assert_close(y, selective_scan_ref(**inputs))


def test_triton_backend_receives_the_positional_signature(monkeypatch):
    seen = {}

    def fake_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        seen.update(delta_bias=delta_bias, delta_softplus=delta_softplus)
        return u * 2

    monkeypatch.setattr(scan_module, "_load_triton", lambda: (fake_triton, lambda device: True, ""))
    inputs = make_inputs(1, 2, 5, 2, dtype=torch.float32)
    y = selective_scan(**inputs, delta_softplus=True, backend="triton")
    torch.testing.assert_close(y, inputs["u"] * 2)
    assert seen["delta_softplus"] is True and seen["delta_bias"] is inputs["delta_bias"]


def test_triton_backend_where_it_cannot_run_is_a_user_error(monkeypatch):
    monkeypatch.setattr(scan_module, "_load_triton", lambda: (None, None, "No module named 'triton'"))
    inputs = make_inputs(1, 2, 5, 2, dtype=torch.float32)
    with pytest.raises(OdsSamError, match="triton"):
        selective_scan(**inputs, backend="triton")


def test_unknown_backend_is_a_user_error():
    inputs = make_inputs(1, 2, 5, 2, dtype=torch.float32)
    with pytest.raises(OdsSamError, match="scan_backend"):
        selective_scan(**inputs, backend="cuda")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i: i.update(B=torch.randn(1, 3, 2, 6), C=torch.randn(1, 3, 2, 6)), "B must be"),
        (lambda i: i.update(A=i["A"][:, :1]), "B must be"),
        (lambda i: i.update(D=i["D"][:2]), "D must be"),
        (lambda i: i.update(delta=i["delta"][..., :3]), "u and delta"),
    ],
)
def test_mismatched_shapes_are_rejected(change, message):
    inputs = make_inputs(1, 4, 6, 2, groups=2, dtype=torch.float32)
    change(inputs)
    for fn in (selective_scan_ref, selective_scan_chunked):
        with pytest.raises(ValueError, match=message):
            fn(**inputs)


def test_flops_formula():
    assert selective_scan_flops(10, 2048, 4096, 16) == 9 * 10 * 2048 * 4096 * 16
