"""Selective scan backends at OD-SSM's shape: forward + backward time and memory.

OD-SSM's default scan at batch 10: K=4 directions x 512 channels (d=2048, B/C grouped
by direction, g=4), n=16 states, l=4096 tokens, softplus(delta + bias), D skip, no z.

Backends compared (each where it exists):
    sequential  the reference loop (forward only: its backward takes about a minute)
    chunked     the chunked closed form in PyTorch (``selective_scan_chunked``)
    parallel    a Blelloch parallel scan over the full (b, l, d, n) state tensor in
                PyTorch, as the ``mambapy`` package does it
    triton      the fused Triton kernels (``selective_scan_triton``)

For each: median milliseconds of forward and of forward + backward, and the peak memory
above what was allocated before the call (outputs and gradients included). The fused
kernels are also checked against the others (values and every gradient). ``--sweep``
times the forward and backward kernels alone over several tile configurations.

Usage::

    python benchmarks/bench_selective_scan.py            # real shape on CUDA
    python benchmarks/bench_selective_scan.py --small    # small shape (default on CPU)
    python benchmarks/bench_selective_scan.py --sweep

Without CUDA it runs the kernels in Triton's interpreter at the small shape, so the
script keeps working on CPU; those timings say nothing about the kernels' speed.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys

import torch

if not torch.cuda.is_available():
    # Must be set before the kernels are defined (at the import below).
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch.nn.functional as F  # noqa: E402

from odssam.models import selective_scan_triton as fused  # noqa: E402
from timing import synchronize, time_calls  # noqa: E402

try:
    from odssam.models import selective_scan as torch_scans
except ImportError:  # the PyTorch backends may not be in this checkout yet
    torch_scans = None

REAL_SHAPE = dict(batch=10, dim=2048, groups=4, state=16, seqlen=4096)
SMALL_SHAPE = dict(batch=1, dim=16, groups=4, state=4, seqlen=32)
# Kernel tilings tried by --sweep (ScanKernelConfig fields).
SWEEP_FORWARD = [
    dict(block_d=128, block_l=8, num_warps=4),
    dict(block_d=32, block_l=8, num_warps=4),
    dict(block_d=64, block_l=8, num_warps=8),
    dict(block_d=16, block_l=8, num_warps=2),
    dict(block_d=32, block_l=4, num_warps=4),
    dict(block_d=16, block_l=4, num_warps=4),
    dict(block_d=32, block_l=16, num_warps=4),
    dict(algorithm="scan", block_d=16, block_l=64, num_warps=4, unroll=False),
]
SWEEP_BACKWARD = [
    dict(block_d_bwd=32, block_l_bwd=8, num_warps_bwd=4, atomic_grads=False),
    dict(block_d_bwd=16, block_l_bwd=8, num_warps_bwd=4, atomic_grads=False),
    dict(block_d_bwd=16, block_l_bwd=8, num_warps_bwd=4),
    dict(block_d_bwd=8, block_l_bwd=8, num_warps_bwd=2, atomic_grads=False),
    dict(block_d_bwd=16, block_l_bwd=4, num_warps_bwd=4, atomic_grads=False),
    dict(block_d_bwd=32, block_l_bwd=4, num_warps_bwd=4, atomic_grads=False),
    dict(block_d_bwd=16, block_l_bwd=8, num_warps_bwd=2, atomic_grads=False),
    dict(block_d_bwd=32, block_l_bwd=8, num_warps_bwd=8, atomic_grads=False),
]


def sequential_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The reference recurrence, one time step at a time (fp32)."""
    if torch_scans is not None:
        return torch_scans.selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    batch, dim, seqlen = u.shape
    dt = delta.float() + (delta_bias.float()[:, None] if delta_bias is not None else 0.0)
    dt = F.softplus(dt) if delta_softplus else dt
    groups = B.shape[1] if B.dim() == 4 else 1
    Bx = B.float().view(batch, groups, 1, A.shape[1], seqlen)
    Cx = C.float().view(batch, groups, 1, A.shape[1], seqlen)
    state = u.new_zeros((batch, groups, dim // groups, A.shape[1]), dtype=torch.float32)
    A4 = A.float().view(groups, dim // groups, -1)
    dtu = (dt * u.float()).view(batch, groups, dim // groups, seqlen)
    dtg = dt.view(batch, groups, dim // groups, seqlen)
    ys = []
    for t in range(seqlen):
        state = torch.exp(dtg[..., t, None] * A4) * state + dtu[..., t, None] * Bx[..., t]
        ys.append((state * Cx[..., t]).sum(-1))
    y = torch.stack(ys, -1).reshape(batch, dim, seqlen)
    if D is not None:
        y = y + D.float()[:, None] * u.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)


def _blelloch_inplace(a: torch.Tensor, x: torch.Tensor) -> None:
    """In-place inclusive scan of x_t = a_t x_{t-1} + x_t along dim 1 (length 2^k)."""
    length = a.shape[1]
    levels = int(math.log2(length))
    for level in range(levels):
        step = 2**level
        right, left = slice(2 * step - 1, None, 2 * step), slice(step - 1, None, 2 * step)
        x[:, right] += a[:, right] * x[:, left]
        a[:, right] *= a[:, left]
    for level in range(levels - 2, -1, -1):
        step = 2**level
        right, left = slice(3 * step - 1, None, 2 * step), slice(2 * step - 1, -step, 2 * step)
        x[:, right] += a[:, right] * x[:, left]


class _ParallelLinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + x_t over dim 1 of (b, l, ...) tensors, memory as in mambapy."""

    @staticmethod
    def forward(ctx, a, x):
        a_work, h = a.clone(), x.clone()
        _blelloch_inplace(a_work, h)
        del a_work
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        # Adjoint: g_t = grad_t + a_{t+1} g_{t+1}, a forward scan on the reversed sequence.
        a_next = torch.zeros_like(a)
        a_next[:, :-1] = a[:, 1:]
        a_rev, g = a_next.flip(1), grad_h.flip(1)
        del a_next
        _blelloch_inplace(a_rev, g)
        del a_rev
        g = g.flip(1)
        grad_a = torch.zeros_like(a)
        grad_a[:, 1:] = g[:, 1:] * h[:, :-1]
        return grad_a, g


def parallel_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan through a Blelloch scan of the full (b, l, d, n) states."""
    batch, dim, seqlen = u.shape
    groups, n_state = (B.shape[1], B.shape[2]) if B.dim() == 4 else (1, B.shape[1])
    dt = delta.float() + (delta_bias.float()[:, None] if delta_bias is not None else 0.0)
    dt = F.softplus(dt) if delta_softplus else dt
    dt_t = dt.transpose(1, 2)  # b, l, d
    decay = torch.exp(dt_t[..., None] * A.float())  # b, l, d, n
    Bt = B.float().reshape(batch, groups, n_state, seqlen).permute(0, 3, 1, 2)[:, :, :, None, :]
    Ct = C.float().reshape(batch, groups, n_state, seqlen).permute(0, 3, 1, 2)[:, :, :, None, :]
    dtu = (dt_t * u.float().transpose(1, 2)).reshape(batch, seqlen, groups, dim // groups, 1)
    inputs = (dtu * Bt).reshape(batch, seqlen, dim, n_state)
    states = _ParallelLinearScan.apply(decay, inputs)
    y = (states.view(batch, seqlen, groups, dim // groups, n_state) * Ct).sum(-1).reshape(batch, seqlen, dim)
    y = y.transpose(1, 2)
    if D is not None:
        y = y + D.float()[:, None] * u.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)


def make_inputs(batch, dim, groups, state, seqlen, device, seed=0):
    """Mamba-like inputs: A = -(1..n), delta bias = softplus^-1 of dt in [1e-3, 1e-1]."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    dt = torch.exp(torch.rand(dim, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dict(
        u=rand(batch, dim, seqlen),
        delta=rand(batch, dim, seqlen) * 0.5,
        A=-torch.arange(1, state + 1, dtype=torch.float32).repeat(dim, 1).to(device),
        B=rand(batch, groups, state, seqlen),
        C=rand(batch, groups, state, seqlen),
        D=torch.ones(dim, device=device),
        delta_bias=(dt + torch.log(-torch.expm1(-dt))).to(device),
    )


def time_ms(fn, device, warmup=2, repeats=10):
    """Median milliseconds of ``fn`` (one untimed and one timed call in the CPU interpreter)."""
    if device.type == "cpu":
        warmup, repeats = min(warmup, 1), min(repeats, 1)
    return statistics.median(time_calls(fn, device, repeats, warmup))


def peak_extra_mib(fn, device):
    """Peak allocated memory during ``fn`` above what was allocated before, in MiB."""
    if device.type != "cuda":
        return float("nan")
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def _leaves(inputs):
    return {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}


def forward_backward(scan, inputs, dy):
    leaves = _leaves(inputs)
    y = scan(**leaves, delta_softplus=True)
    grads = torch.autograd.grad(y, list(leaves.values()), dy)
    return y.detach(), dict(zip(leaves, grads))


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def backends(config=None):
    table = {"sequential": sequential_scan}
    if torch_scans is not None and hasattr(torch_scans, "selective_scan_chunked"):
        table["chunked"] = torch_scans.selective_scan_chunked
    table["parallel"] = parallel_scan
    table["triton"] = functools.partial(fused.selective_scan_triton, config=config)
    return table


def run_comparison(shape, device, repeats, skip, config=None):
    inputs = make_inputs(**shape, device=device)
    dy = torch.randn(shape["batch"], shape["dim"], shape["seqlen"], device=device)
    results, outputs = {}, {}
    for name, scan in backends(config).items():
        if name in skip:
            continue
        try:
            with torch.no_grad():
                slow = name == "sequential" or device.type == "cpu"
                fwd_ms = time_ms(lambda: scan(**inputs, delta_softplus=True), device,
                                 warmup=0 if slow else 2, repeats=1 if slow else repeats)
            row = dict(fwd_ms=fwd_ms, fwdbwd_ms=float("nan"), peak_mib=float("nan"))
            if name == "sequential":
                with torch.no_grad():
                    outputs[name] = (scan(**inputs, delta_softplus=True), None)
            else:
                row["fwdbwd_ms"] = time_ms(lambda: forward_backward(scan, inputs, dy), device,
                                           warmup=0 if slow else 2, repeats=repeats)
                row["peak_mib"] = peak_extra_mib(lambda: forward_backward(scan, inputs, dy), device)
                outputs[name] = forward_backward(scan, inputs, dy)
        except torch.cuda.OutOfMemoryError as err:
            row = dict(fwd_ms=float("nan"), fwdbwd_ms=float("nan"), peak_mib=float("nan"), error=str(err)[:80])
        results[name] = row
        torch.cuda.empty_cache() if device.type == "cuda" else None
        print(f"  {name:10s} fwd {row['fwd_ms']:10.2f} ms   fwd+bwd {row['fwdbwd_ms']:10.2f} ms   "
              f"peak extra {row['peak_mib']:9.0f} MiB {row.get('error', '')}", flush=True)
    return results, outputs


def check_against(outputs, ours="triton"):
    if ours not in outputs:
        return
    y, grads = outputs[ours]
    for name, (y_ref, grads_ref) in outputs.items():
        if name == ours:
            continue
        line = f"  {ours} vs {name:10s} y {rel_err(y, y_ref):.2e}"
        if grads_ref is not None:
            line += "  " + "  ".join(f"d{k} {rel_err(grads[k], grads_ref[k]):.2e}" for k in grads)
        print(line, flush=True)


def sweep(shape, device, repeats):
    """Times the forward and backward kernels alone over tile configurations."""
    inputs = make_inputs(**shape, device=device)
    u, delta, A, B, C, D, bias = (inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias"))
    dy = torch.randn_like(u)
    print("forward kernel alone (states kept every 8 steps): ms", flush=True)
    best_fwd, best_bwd = {}, {}
    for fields in SWEEP_FORWARD:
        cfg = fused.ScanKernelConfig(**dict(dict(block_l_bwd=max(8, fields["block_l"])), **fields))
        ms = time_ms(lambda: fused._launch_forward(u, delta, A, B, C, D, bias, True, cfg, True), device, repeats=repeats)
        best_fwd[str(fields)] = ms
        print(f"  fwd {ms:8.3f}  {fields}", flush=True)
    print("backward kernel alone: ms", flush=True)
    for fields in SWEEP_BACKWARD:
        cfg = fused.ScanKernelConfig(**dict(dict(block_l=4), **fields))
        _, states = fused._launch_forward(u, delta, A, B, C, D, bias, True, cfg, True)
        ms = time_ms(lambda: fused._launch_backward(dy, u, delta, A, B, C, D, bias, states, True, cfg),
                     device, repeats=repeats)
        best_bwd[str(fields)] = ms
        print(f"  bwd {ms:8.3f}  {fields}", flush=True)
        del states
    # The fastest pair that fits together: the forward chunk must divide the backward's.
    bwd_best = min(SWEEP_BACKWARD, key=lambda f: best_bwd[str(f)])
    fitting = [f for f in SWEEP_FORWARD if bwd_best["block_l_bwd"] % f["block_l"] == 0
               and f.get("algorithm", "sequential") == bwd_best.get("algorithm", "sequential")]
    fwd_best = min(fitting, key=lambda f: best_fwd[str(f)]) if fitting else {}
    print(f"fastest fitting pair: {fwd_best} + {bwd_best}", flush=True)
    return dict(fwd_best, **bwd_best)


def parse_config(text):
    """``key=value,...`` -> ScanKernelConfig fields (ints, booleans or strings)."""
    fields = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        fields[key] = int(value) if value.isdigit() else {"true": True, "false": False}.get(value.lower(), value)
    return fields


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="small shape (default without CUDA)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip", default="", help="comma-separated backends to leave out")
    parser.add_argument("--sweep", action="store_true", help="also time kernel tile configurations")
    parser.add_argument("--config", default="", help="kernel tiling for the comparison, e.g. block_d=64,block_l=4")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = SMALL_SHAPE if args.small or device.type == "cpu" else REAL_SHAPE
    if device.type == "cpu":
        args.repeats = min(args.repeats, 2)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"cuda {torch.version.cuda}, shape {shape}", flush=True)
    fields = parse_config(args.config)
    if args.sweep:
        fields = dict(sweep(shape, device, args.repeats), **fields)
    config = fused.ScanKernelConfig(**fields)
    print(f"kernel config {config}", flush=True)
    results, outputs = run_comparison(shape, device, args.repeats, set(filter(None, args.skip.split(","))), config)
    check_against(outputs)
    ours = results.get("triton", {}).get("fwdbwd_ms")
    for name, row in results.items():
        if name != "triton" and ours:
            key = "fwd_ms" if name == "sequential" else "fwdbwd_ms"
            what = "forward" if name == "sequential" else "forward+backward"
            print(f"ratio {name}/triton ({what}): {row[key] / (results['triton'][key]):.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
