"""Tests of the fused Triton selective scan against the sequential reference.

On CPU the kernels run in Triton's interpreter, in a subprocess (the interpreter is
chosen when the kernels are defined, so ``TRITON_INTERPRET=1`` must be set before the
module is imported). On a CUDA machine the same cases also run compiled.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from odssam.models import selective_scan_triton as fused
from odssam.models.selective_scan import selective_scan, selective_scan_ref

from helpers import run_in_triton_interpreter


# name -> (shape and options, kernel configuration)
CASES = {
    "grouped_bias_softplus_skip": (
        dict(batch=2, dim=8, groups=2, state=4, seqlen=21, D=True, bias=True, softplus=True, z=False, grouped=True),
        dict(block_d=4, block_d_bwd=2, block_l=4, block_l_bwd=8),
    ),
    "ungrouped_plain_odd_sizes": (
        dict(batch=1, dim=6, groups=1, state=3, seqlen=10, D=False, bias=False, softplus=False, z=False, grouped=False),
        dict(block_d=4, block_d_bwd=4, block_l=2, block_l_bwd=4, atomic_grads=False, keep_decays=False),
    ),
    "gate_z": (
        dict(batch=1, dim=4, groups=2, state=2, seqlen=9, D=True, bias=True, softplus=True, z=True, grouped=True),
        dict(block_d=2, block_d_bwd=2, block_l=4, block_l_bwd=4),
    ),
    "scan_algorithm": (
        dict(batch=2, dim=4, groups=2, state=4, seqlen=19, D=True, bias=True, softplus=True, z=False, grouped=True),
        dict(algorithm="scan", block_d=2, block_d_bwd=2, block_l=4, block_l_bwd=8, unroll=False),
    ),
}

NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


def make_case(spec: dict, seed: int, device: str = "cpu", dtype=torch.float64) -> dict:
    """Random inputs of one case; steep and shallow decays, deltas around softplus' knee."""
    gen = torch.Generator().manual_seed(seed)
    batch, dim, groups, state, seqlen = (spec[k] for k in ("batch", "dim", "groups", "state", "seqlen"))

    def rand(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift).to(device, dtype)

    bc_shape = (batch, groups, state, seqlen) if spec["grouped"] else (batch, state, seqlen)
    return dict(
        u=rand(batch, dim, seqlen),
        delta=rand(batch, dim, seqlen, scale=0.5, shift=-1.0) if spec["softplus"] else rand(batch, dim, seqlen).abs() * 0.3,
        A=-(torch.rand(dim, state, generator=gen, dtype=torch.float64) * 3 + 0.05).to(device, dtype),
        B=rand(*bc_shape),
        C=rand(*bc_shape),
        D=rand(dim) if spec["D"] else None,
        z=rand(batch, dim, seqlen) if spec["z"] else None,
        delta_bias=rand(dim, scale=0.5) if spec["bias"] else None,
    )


def gradients(scan, inputs: dict, softplus: bool, seed: int, **kwargs):
    """Output and the gradients of a random projection of it, for every given input."""
    leaves = {k: (v.detach().clone().requires_grad_(True) if v is not None else None) for k, v in inputs.items()}
    y = scan(**leaves, delta_softplus=softplus, **kwargs)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    present = [k for k in NAMES if leaves[k] is not None]
    grads = torch.autograd.grad((y.double() * weights.to(y.device)).sum(), [leaves[k] for k in present])
    return y.detach(), dict(zip(present, grads))


def relative_errors(spec: dict, config: dict, seed: int, device: str, dtype=torch.float32) -> dict:
    """Relative L2 errors of the fused scan (in ``dtype``) against the float64 reference."""
    reference = make_case(spec, seed, device, torch.float64)
    y_ref, g_ref = gradients(selective_scan_ref, reference, spec["softplus"], seed)
    ours_inputs = {k: (v.to(dtype) if v is not None else None) for k, v in reference.items()}
    kernel_config = fused.ScanKernelConfig(**config)
    y, g = gradients(fused.selective_scan_triton, ours_inputs, spec["softplus"], seed, config=kernel_config)

    def err(a, b):
        return ((a.double() - b).norm() / b.norm()).item()

    errors = {"y": err(y, y_ref)}
    errors.update({f"d{k}": err(g[k], g_ref[k]) for k in g_ref})
    errors["dtype_ok"] = float(y.dtype == dtype and all(g[k].dtype == dtype for k in g))
    return errors


_INTERPRETER_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import test_selective_scan_triton as t
print(json.dumps({{name: t.relative_errors(*t.CASES[name], seed=i, device="cpu") for i, name in enumerate(t.CASES)}}))
"""


@pytest.fixture(scope="module")
def interpreter_errors() -> dict:
    script = _INTERPRETER_SCRIPT.format(tests=str(Path(__file__).parent))
    done = run_in_triton_interpreter(script, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(CASES))
def test_interpreted_kernels_match_reference(interpreter_errors, name):
    errors = interpreter_errors[name]
    assert errors.pop("dtype_ok") == 1.0
    assert set(errors) >= {"y", "du", "ddelta", "dA", "dB", "dC"}
    bad = {k: v for k, v in errors.items() if not v < 1e-5}
    assert not bad, f"{name}: relative errors too large: {bad}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_kernels_match_reference(name):
    errors = relative_errors(*CASES[name], seed=10, device="cuda")
    assert errors.pop("dtype_ok") == 1.0
    bad = {k: v for k, v in errors.items() if not v < 1e-5}
    assert not bad, f"{name}: relative errors too large: {bad}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("algorithm", ["sequential", "scan"])
def test_cuda_default_tiles_match_reference_at_a_larger_shape(algorithm):
    spec = dict(batch=2, dim=256, groups=4, state=16, seqlen=300, D=True, bias=True, softplus=True, z=False, grouped=True)
    config = dict(algorithm=algorithm) if algorithm == "sequential" else dict(
        algorithm="scan", block_d=16, block_d_bwd=8, block_l=64, block_l_bwd=64, unroll=True
    )
    errors = relative_errors(spec, config, seed=3, device="cuda")
    assert errors.pop("dtype_ok") == 1.0
    bad = {k: v for k, v in errors.items() if not v < 1e-5}
    assert not bad, f"relative errors too large: {bad}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bfloat16_inputs_keep_dtype_and_stay_close():
    spec, config = CASES["grouped_bias_softplus_skip"]
    errors = relative_errors(spec, config, seed=4, device="cuda", dtype=torch.bfloat16)
    assert errors.pop("dtype_ok") == 1.0
    assert errors["y"] < 2e-2 and errors["du"] < 2e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dispatcher_routes_cuda_tensors_to_the_kernels():
    spec = CASES["grouped_bias_softplus_skip"][0]
    inputs = {k: (v.float() if v is not None else None) for k, v in make_case(spec, 5, "cuda").items()}
    y_auto = selective_scan(**inputs, delta_softplus=True, backend="auto")
    y_fused = fused.selective_scan_triton(**inputs, delta_softplus=True)
    torch.testing.assert_close(y_auto, y_fused, rtol=0, atol=0)


def test_cpu_tensors_without_interpreter_are_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not fused.is_available("cpu")
    inputs = {k: (v.float() if v is not None else None) for k, v in make_case(CASES["gate_z"][0], 0).items()}
    with pytest.raises(RuntimeError, match="CUDA"):
        fused.selective_scan_triton(**inputs, delta_softplus=True)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(delta=torch.zeros(1, 4, 8)), "u and delta"),
        (dict(A=torch.zeros(3, 2)), "A must be"),
        (dict(B=torch.zeros(1, 3, 2, 9), C=torch.zeros(1, 3, 2, 9)), "not divisible"),
        (dict(C=torch.zeros(1, 2, 3, 9)), "must match"),
        (dict(D=torch.zeros(5)), "D must be"),
    ],
)
def test_inconsistent_shapes_are_rejected(change, message):
    inputs = {k: (v.float() if v is not None else None) for k, v in make_case(CASES["gate_z"][0], 0).items()}
    inputs.update(change)
    with pytest.raises(ValueError, match=message):
        fused.selective_scan_triton(**inputs)


def test_backward_tile_must_be_a_multiple_of_forward_tile(monkeypatch):
    monkeypatch.setattr(fused, "is_available", lambda device=None: True)
    inputs = {k: (v.float() if v is not None else None) for k, v in make_case(CASES["gate_z"][0], 0).items()}
    with pytest.raises(ValueError, match="multiple"):
        fused.selective_scan_triton(**inputs, config=fused.ScanKernelConfig(block_l=8, block_l_bwd=12))
