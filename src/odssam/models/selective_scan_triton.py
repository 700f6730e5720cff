"""Fused Triton selective scan, forward and backward.

Computes mamba's ``selective_scan_ref`` (see ``odssam.models.selective_scan``)::

    delta = softplus(delta + delta_bias)              # optional bias and softplus
    x_t   = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t
    y_t   = <x_t, C_t> + D * u_t                       # times silu(z) if z is given

with the N states of each channel kept on chip. One program owns a block of channels of
one batch element and walks the whole sequence. Two algorithms (``ScanKernelConfig``):

* ``sequential`` (default): all N states of a channel advance together, one time step
  after the other; a chunk of ``block_l`` steps of ``u``/``delta`` is loaded at once and
  walked step by step, ``B``/``C`` are read time-major so a step's N values are
  contiguous.
* ``scan``: each state is solved over a chunk with ``tl.associative_scan`` on
  ``(decay, input)`` pairs and carried into the next chunk (slower on an H100).

The forward pass stores only the state at the start of every backward chunk
(``B x D x L/block_l_bwd x N`` floats). The backward pass walks the chunks in reverse:
it recomputes the chunk's states from the stored start, runs the adjoint recurrence
``g_t = dy_t C_t + exp(delta_{t+1} A) g_{t+1}`` backwards, and accumulates every
gradient in the same sweep. Gradients of ``B`` and ``C`` sum over the channels of a
group: each program writes its block's partial sum (summed afterwards) or adds it
atomically. ``z`` is applied outside the kernels (``y * silu(z)`` in PyTorch).

All arithmetic is fp32 whatever the input dtype. Triton is optional: this module imports
without it, and :func:`selective_scan_triton` then raises. On CPU tensors the kernels run
only under Triton's interpreter (``TRITON_INTERPRET=1``), which the tests use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from odssam.models.selective_scan import as_grouped, check_scan_shapes

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU path of the package never needs Triton
    triton = None
    tl = None

__all__ = ["ScanKernelConfig", "is_available", "selective_scan_triton", "default_config"]



@dataclass(frozen=True)
class ScanKernelConfig:
    """Tile sizes and launch parameters of the two kernels.

    Attributes:
        block_d: Channels per program in the forward pass (a power of two; shrunk to
            divide the channels of a group).
        block_d_bwd: Channels per program in the backward pass.
        block_l: Time steps loaded per chunk in the forward pass.
        block_l_bwd: Time steps per chunk in the backward pass, a multiple of
            ``block_l``; the forward pass stores the state at the start of each.
        num_warps: Warps per program in the forward pass.
        num_warps_bwd: Warps per program in the backward pass.
        atomic_grads: Add the ``dB``/``dC`` partial sums of the channel blocks with
            atomics (fast, order not fixed) instead of writing one partial per block
            and summing them afterwards (deterministic, one more pass over memory).
        unroll: ``scan`` algorithm: unroll the loop over the states in the forward
            kernel (their scans overlap; more registers).
        unroll_bwd: The same in the backward kernel.
        algorithm: ``sequential`` (all states of a channel step through time together)
            or ``scan`` (each state solved over a chunk by an associative scan).
        keep_decays: Sequential backward: keep the chunk's ``exp(delta A)`` in registers
            for the reverse sweep instead of recomputing them (fewer exponentials, more
            registers).
    """

    block_d: int = 128
    block_d_bwd: int = 16
    block_l: int = 8
    block_l_bwd: int = 8
    num_warps: int = 4
    num_warps_bwd: int = 2
    atomic_grads: bool = False
    unroll: bool = True
    unroll_bwd: bool = False
    algorithm: str = "sequential"
    keep_decays: bool = True


def default_config() -> ScanKernelConfig:
    """The configuration used when none is given: the fastest pair of a sweep on an H100
    at OD-SSM's shape (``benchmarks/bench_selective_scan.py --sweep``)."""
    return ScanKernelConfig()


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def is_available(device: torch.device | str | None = None) -> bool:
    """Whether the Triton kernels can run on ``device`` (default: the current CUDA one).

    True on a CUDA device when Triton imports, and on CPU when Triton's interpreter is
    switched on (``TRITON_INTERPRET=1`` set before Triton was imported).
    """
    if triton is None:
        return False
    device = torch.device(device) if device is not None else None
    if device is None or device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu" and _interpreting()


if triton is not None:

    @triton.jit
    def _linear_combine(decay_l, value_l, decay_r, value_r):
        # Composes x -> decay_l * x + value_l, then x -> decay_r * x + value_r.
        return decay_l * decay_r, decay_r * value_l + value_r

    @triton.jit
    def _softplus(x):
        # log1p(exp(x)) with Goldberg's correction: (1 + e) - 1 is exact, so the ratio
        # undoes the rounding of 1 + e; beyond 20 softplus is x (as in torch).
        e = tl.exp(tl.minimum(x, 20.0))
        one_plus = 1.0 + e
        shifted = one_plus - 1.0
        log1p = tl.where(shifted == 0.0, e, tl.log(one_plus) * (e / tl.where(shifted == 0.0, 1.0, shifted)))
        return tl.where(x > 20.0, x, log1p)

    @triton.jit
    def _column(tile, index, k):
        # tile[:, k] of a (rows, len(index)) tile, as a (rows,) vector: a state (index: the
        # state columns) or a time step (index: the chunk's steps).
        return tl.sum(tl.where(index[None, :] == k, tile, 0.0), axis=1)

    # ------------------------------------------------------------------ shared by the kernels
    # Every kernel is one program per (block of BLOCK_D channels, batch element) that walks
    # the sequence in chunks of BLOCK_L steps; these helpers are its common pieces. Keep the
    # order of the floating-point operations when moving code: the compiler fuses multiplies
    # and adds into FMAs by that order, so a reordering changes gradients in the last bits.

    @triton.jit
    def _program_tiles(
        seqlen, dim, groups, dims_per_group, saved_chunks, N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr
    ):
        # This program's channels and where their data lie: (pid_d, pid_b, d_offs, cols,
        # row_offs of the (batch, dim, L) tensors, batch_group: the (batch, group) index of
        # B and C, state_offs of the (batch, dim, saved_chunks, N) saved states).
        pid_d = tl.program_id(0)
        pid_b = tl.program_id(1).to(tl.int64)
        d_offs = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        cols = tl.arange(0, NP)
        group = (pid_d * BLOCK_D) // dims_per_group
        row_offs = (pid_b * dim + d_offs)[:, None] * seqlen
        state_offs = ((pid_b * dim + d_offs)[:, None] * saved_chunks) * N + cols[None, :]
        return pid_d, pid_b, d_offs, cols, row_offs, pid_b * groups + group, state_offs

    @triton.jit
    def _load_skip_and_bias(
        D_ptr, bias_ptr, d_offs, BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr
    ):
        # D and delta_bias of the block's channels, (BLOCK_D,) each; zeros where absent.
        skip = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_D:
            skip = tl.load(D_ptr + d_offs).to(tl.float32)
        bias = tl.zeros([BLOCK_D], dtype=tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + d_offs).to(tl.float32)
        return skip, bias

    @triton.jit
    def _load_rows(ptr, row_offs, t, t_mask):
        # Steps t of the block's rows of a (batch, dim, L) tensor: (BLOCK_D, BLOCK_L), fp32.
        return tl.load(ptr + row_offs + t[None, :], mask=t_mask[None, :], other=0.0).to(tl.float32)

    @triton.jit
    def _store_rows(ptr, row_offs, t, t_mask, tile):
        tl.store(ptr + row_offs + t[None, :], tile, mask=t_mask[None, :])

    @triton.jit
    def _load_delta(delta_ptr, row_offs, t, t_mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
        raw = _load_rows(delta_ptr, row_offs, t, t_mask)
        if HAS_BIAS:
            raw = raw + bias[:, None]
        dt = raw
        if SOFTPLUS:
            dt = _softplus(raw)
        # Padding steps get delta 0: decay 1 and input 0, an identity step of the scan.
        return raw, tl.where(t_mask[None, :], dt, 0.0)

    @triton.jit
    def _chunk_step_masks(BLOCK_L: tl.constexpr):
        # A chunk's step indices (BLOCK_L,) and (1, BLOCK_L) masks of its first and last step.
        steps = tl.arange(0, BLOCK_L)
        return steps, (steps == 0)[None, :], (steps == BLOCK_L - 1)[None, :]

    @triton.jit
    def _chunk_steps(chunk, steps, seqlen, BLOCK_L: tl.constexpr):
        # The chunk's time steps t and which of them lie inside the sequence.
        t = chunk * BLOCK_L + steps
        return t, t < seqlen

    @triton.jit
    def _finish_backward_chunk(
        du_ptr, ddelta_ptr, row_offs, t, t_mask, u, dy, raw, du, ddt, dD_acc, dbias_acc, SOFTPLUS: tl.constexpr
    ):
        # Writes the chunk's du and ddelta (through the softplus); adds its dD and dbias.
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(t_mask[None, :], ddt, 0.0)
        _store_rows(du_ptr, row_offs, t, t_mask, du)
        _store_rows(ddelta_ptr, row_offs, t, t_mask, ddt)
        dD_acc += tl.sum(dy * u, axis=1)
        dbias_acc += tl.sum(ddt, axis=1)
        return dD_acc, dbias_acc

    @triton.jit
    def _write_bc_grads(dB_ptr, dC_ptr, offs, dB, dC, mask, ATOMIC_BC: tl.constexpr):
        # dB and dC sum over a group's channels: add this block's part atomically, or write
        # it as the block's partial sum (summed after the kernel).
        if ATOMIC_BC:
            tl.atomic_add(dC_ptr + offs, dC, mask=mask)
            tl.atomic_add(dB_ptr + offs, dB, mask=mask)
        else:
            tl.store(dC_ptr + offs, dC, mask=mask)
            tl.store(dB_ptr + offs, dB, mask=mask)

    @triton.jit
    def _add_channel_grads(
        dA_ptr, dD_ptr, dbias_ptr, d_offs, cols, dA_acc, dD_acc, dbias_acc,
        N: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    ):
        # Channel gradients sum over the batch: every batch element's program adds its own.
        tl.atomic_add(dA_ptr + d_offs[:, None] * N + cols[None, :], dA_acc, mask=cols[None, :] < N)
        if HAS_D:
            tl.atomic_add(dD_ptr + d_offs, dD_acc)
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + d_offs, dbias_acc)

    # ------------------------------------------------------------------ scan algorithm
    # Each state is solved over a chunk by an associative scan of (decay, input) pairs.
    # B, C and their gradients are (batch, groups, N, L): a state's steps are contiguous.

    @triton.jit
    def _state_over_chunk(n, A_ptr, BC_offs, B_ptr, C_ptr, d_offs, t_mask, first, cols, dt, dtu, h, N: tl.constexpr):
        # State n of a block of channels at every step of a chunk, from h at its start:
        # (a_nat: A[:, n], a_n: A[:, n] / ln 2, B_n, C_n, dBu: the inputs delta B u, x).
        a_nat = tl.load(A_ptr + d_offs * N + n).to(tl.float32)
        a_n = a_nat * 1.4426950408889634
        h_n = _column(h, cols, n)
        B_n = tl.load(B_ptr + BC_offs, mask=t_mask, other=0.0).to(tl.float32)
        C_n = tl.load(C_ptr + BC_offs, mask=t_mask, other=0.0).to(tl.float32)
        decay = tl.exp2(dt * a_n[:, None])
        dBu = dtu * B_n[None, :]
        inp = tl.where(first, dBu + decay * h_n[:, None], dBu)
        _, x = tl.associative_scan((decay, inp), 1, _linear_combine)
        return a_nat, a_n, B_n, C_n, dBu, x

    @triton.jit
    def _forward_state(
        n, A_ptr, BC_offs, B_ptr, C_ptr, d_offs, t_mask, first, last, cols, dt, dtu, h, y, N: tl.constexpr
    ):
        # Advances state n of a block of channels over one chunk; adds its part of y.
        _, _, _, C_n, _, x = _state_over_chunk(
            n, A_ptr, BC_offs, B_ptr, C_ptr, d_offs, t_mask, first, cols, dt, dtu, h, N)
        y += x * C_n[None, :]
        h_end = tl.sum(tl.where(last, x, 0.0), axis=1)
        h = tl.where(cols[None, :] == n, h_end[:, None], h)
        return h, y

    @triton.jit
    def _scan_forward_chunk(
        A_ptr, B_ptr, C_ptr, bc_base, seqlen, d_offs, t, t_mask, first, last, cols, dt, dtu, h, y,
        N: tl.constexpr, UNROLL: tl.constexpr,
    ):
        # Advances all N states over one chunk, one after the other; returns (h, y). first,
        # last: (1, BLOCK_L) masks of the chunk's first and last step.
        # Unrolling lets the states' scans overlap but keeps them all live at once.
        if UNROLL:
            for n in tl.static_range(N):
                h, y = _forward_state(n, A_ptr, bc_base + n * seqlen + t, B_ptr, C_ptr, d_offs, t_mask,
                                      first, last, cols, dt, dtu, h, y, N)
        else:
            for n in range(N):
                h, y = _forward_state(n, A_ptr, bc_base + n * seqlen + t, B_ptr, C_ptr, d_offs, t_mask,
                                      first, last, cols, dt, dtu, h, y, N)
        return h, y

    @triton.jit
    def _backward_state(
        n, A_ptr, BC_offs, dBC_offs, B_ptr, C_ptr, dB_ptr, dC_ptr, d_offs, t_mask, first, last, cols,
        u, dy, dt, dt_next, dtu, h, g, dA_acc, du, ddt, N: tl.constexpr, ATOMIC_BC: tl.constexpr,
    ):
        # Recomputes state n over one chunk, runs its adjoint backwards, adds its gradients.
        g_n = _column(g, cols, n)
        a_nat, a_n, B_n, C_n, dBu, x = _state_over_chunk(
            n, A_ptr, BC_offs, B_ptr, C_ptr, d_offs, t_mask, first, cols, dt, dtu, h, N)
        decay_next = tl.exp2(dt_next * a_n[:, None])
        out_grad = dy * C_n[None, :]
        out_grad = tl.where(last, out_grad + decay_next * g_n[:, None], out_grad)
        _, adj = tl.associative_scan((decay_next, out_grad), 1, _linear_combine, reverse=True)
        g_start = tl.sum(tl.where(first, adj, 0.0), axis=1)
        g = tl.where(cols[None, :] == n, g_start[:, None], g)

        dC_n = tl.sum(dy * x, axis=0)
        adj_dt = adj * dt
        dB_n = tl.sum(adj_dt * u, axis=0)
        _write_bc_grads(dB_ptr, dC_ptr, dBC_offs, dB_n, dC_n, t_mask, ATOMIC_BC)
        du += adj_dt * B_n[None, :]
        # x_t - dBu_t = exp(delta_t A) x_{t-1}: the state before the step, decayed.
        prev_decayed = x - dBu
        ddt += adj * (B_n[None, :] * u + a_nat[:, None] * prev_decayed)
        dA_n = tl.sum(adj_dt * prev_decayed, axis=1)
        dA_acc = tl.where(cols[None, :] == n, dA_acc + dA_n[:, None], dA_acc)
        return g, dA_acc, du, ddt

    @triton.jit
    def _scan_backward_chunk(
        A_ptr, B_ptr, C_ptr, dB_ptr, dC_ptr, bc_base, dbc_base, seqlen, d_offs, t, t_mask, first, last, cols,
        u, dy, dt, dt_next, h, skip, g, dA_acc,
        N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr, ATOMIC_BC: tl.constexpr, UNROLL: tl.constexpr,
    ):
        # Backward pass of one chunk, state after state. g: the adjoint entering the chunk
        # from the next one. Returns (g, dA_acc, du, ddt).
        dtu = dt * u
        du = skip[:, None] * dy
        ddt = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        if UNROLL:
            for n in tl.static_range(N):
                g, dA_acc, du, ddt = _backward_state(
                    n, A_ptr, bc_base + n * seqlen + t, dbc_base + n * seqlen + t, B_ptr, C_ptr, dB_ptr,
                    dC_ptr, d_offs, t_mask, first, last, cols, u, dy, dt, dt_next, dtu, h, g, dA_acc, du,
                    ddt, N, ATOMIC_BC)
        else:
            for n in range(N):
                g, dA_acc, du, ddt = _backward_state(
                    n, A_ptr, bc_base + n * seqlen + t, dbc_base + n * seqlen + t, B_ptr, C_ptr, dB_ptr,
                    dC_ptr, d_offs, t_mask, first, last, cols, u, dy, dt, dt_next, dtu, h, g, dA_acc, du,
                    ddt, N, ATOMIC_BC)
        return g, dA_acc, du, ddt

    # ------------------------------------------------------------------ sequential algorithm
    # All N states of a channel advance together, one time step after the other; the chunk
    # of BLOCK_L steps is loaded at once (coalesced) and walked step by step. B, C and their
    # gradients are time-major, (batch, groups, L, N): a step's N values are contiguous.

    @triton.jit
    def _load_A(A_ptr, d_offs, cols, N: tl.constexpr):
        # A of the block's channels, (BLOCK_D, NP), fp32; 0 in the padding columns.
        return tl.load(A_ptr + d_offs[:, None] * N + cols[None, :], mask=(cols < N)[None, :], other=0.0).to(tl.float32)

    @triton.jit
    def _load_step(ptr, bc_base, chunk, k, cols, seqlen, N: tl.constexpr, BLOCK_L: tl.constexpr):
        # The N values of step k of the chunk from time-major B or C, (NP,), fp32.
        step = chunk * BLOCK_L + k
        return tl.load(ptr + bc_base + step * N + cols, mask=(cols < N) & (step < seqlen), other=0.0).to(tl.float32)

    @triton.jit
    def _sequential_forward_chunk(
        A_nat, B_ptr, C_ptr, bc_base, seqlen, chunk, steps, cols, dt, dtu, h, y,
        N: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        # Advances the states over one chunk, step after step; returns (h, y).
        A2 = A_nat * 1.4426950408889634
        for k in tl.static_range(BLOCK_L):
            dt_k = _column(dt, steps, k)
            dtu_k = _column(dtu, steps, k)
            B_k = _load_step(B_ptr, bc_base, chunk, k, cols, seqlen, N, BLOCK_L)
            C_k = _load_step(C_ptr, bc_base, chunk, k, cols, seqlen, N, BLOCK_L)
            h = tl.exp2(dt_k[:, None] * A2) * h + dtu_k[:, None] * B_k[None, :]
            y_k = tl.sum(h * C_k[None, :], axis=1)
            y = tl.where(steps[None, :] == k, y + y_k[:, None], y)
        return h, y

    @triton.jit
    def _sequential_backward_chunk(
        A_nat, B_ptr, C_ptr, dB_ptr, dC_ptr, bc_base, dbc_base, seqlen, chunk, t_mask, steps, cols,
        u, dy, dt, h, skip, w, dA_acc,
        N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
        ATOMIC_BC: tl.constexpr, KEEP_DECAYS: tl.constexpr,
    ):
        # Recomputes the chunk's states from its start h (kept in registers, one tile per
        # step), then runs the adjoint step by step. The carried adjoint is
        # w = exp(delta_{t+1} A) g_{t+1}, so every factor it needs was already computed by
        # the recomputation. Returns (w, dA_acc, du, ddt).
        A2 = A_nat * 1.4426950408889634
        # Per-step columns are extracted once (a cross-lane reduction each) and kept.
        states = (h,)
        decays = ()
        dts = ()
        us = ()
        for k in tl.static_range(BLOCK_L):
            dt_k = _column(dt, steps, k)
            u_k = _column(u, steps, k)
            B_k = _load_step(B_ptr, bc_base, chunk, k, cols, seqlen, N, BLOCK_L)
            decay = tl.exp2(dt_k[:, None] * A2)
            h = decay * h + (dt_k * u_k)[:, None] * B_k[None, :]
            states = states + (h,)
            dts = dts + (dt_k,)
            us = us + (u_k,)
            if KEEP_DECAYS:
                decays = decays + (decay,)

        du = skip[:, None] * dy
        ddt = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
        dB = tl.zeros([BLOCK_L, NP], dtype=tl.float32)
        dC = tl.zeros([BLOCK_L, NP], dtype=tl.float32)
        for k in tl.static_range(BLOCK_L - 1, -1, -1):
            at_k = steps[None, :] == k
            row_k = steps[:, None] == k
            u_k = us[k]
            dt_k = dts[k]
            dy_k = _column(dy, steps, k)
            B_k = _load_step(B_ptr, bc_base, chunk, k, cols, seqlen, N, BLOCK_L)
            C_k = _load_step(C_ptr, bc_base, chunk, k, cols, seqlen, N, BLOCK_L)
            if KEEP_DECAYS:
                decay = decays[k]
            else:
                # Recomputed through exp rather than exp2, so the compiler cannot merge
                # it with the forward sweep's value and keep that alive instead.
                decay = tl.exp(dt_k[:, None] * A_nat)
            g = dy_k[:, None] * C_k[None, :] + w
            decayed_prev = decay * states[k]
            dC = tl.where(row_k, dC + tl.sum(dy_k[:, None] * states[k + 1], axis=0)[None, :], dC)
            dB = tl.where(row_k, dB + tl.sum(g * (dt_k * u_k)[:, None], axis=0)[None, :], dB)
            # du_t = dt_t sum_n g B + D dy_t; ddelta_t = u_t sum_n g B + sum_n g A x~_t.
            g_B = tl.sum(g * B_k[None, :], axis=1)
            g_Ax = tl.sum(g * A_nat * decayed_prev, axis=1)
            du = tl.where(at_k, du + (dt_k * g_B)[:, None], du)
            ddt = tl.where(at_k, ddt + (u_k * g_B + g_Ax)[:, None], ddt)
            dA_acc += g * dt_k[:, None] * decayed_prev
            w = decay * g
        dbc_offs = dbc_base + steps[:, None] * N + cols[None, :] + chunk * BLOCK_L * N
        bc_mask = t_mask[:, None] & (cols < N)[None, :]
        _write_bc_grads(dB_ptr, dC_ptr, dbc_offs, dB, dC, bc_mask, ATOMIC_BC)
        return w, dA_acc, du, ddt

    # ------------------------------------------------------------------ kernels

    @triton.jit
    def _forward_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr,
        y_ptr, states_ptr,
        seqlen, dim, groups, dims_per_group,
        N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
        SAVE_STATES: tl.constexpr, SAVE_STRIDE: tl.constexpr,
        SEQUENTIAL: tl.constexpr, UNROLL: tl.constexpr,
    ):
        n_chunks = tl.cdiv(seqlen, BLOCK_L)
        # States are kept at the start of every SAVE_STRIDE-th chunk (a backward chunk).
        pid_d, pid_b, d_offs, cols, row_offs, batch_group, state_offs = _program_tiles(
            seqlen, dim, groups, dims_per_group, tl.cdiv(n_chunks, SAVE_STRIDE), N, NP, BLOCK_D)
        bc_base = batch_group * N * seqlen  # (batch, group)'s B and C, in either layout
        skip, bias = _load_skip_and_bias(D_ptr, bias_ptr, d_offs, BLOCK_D, HAS_D, HAS_BIAS)
        if SEQUENTIAL:
            A_nat = _load_A(A_ptr, d_offs, cols, N)
        steps, first, last = _chunk_step_masks(BLOCK_L)
        h = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
        for chunk in range(n_chunks):
            if SAVE_STATES and chunk % SAVE_STRIDE == 0:
                tl.store(states_ptr + state_offs + (chunk // SAVE_STRIDE) * N, h, mask=cols[None, :] < N)
            t, t_mask = _chunk_steps(chunk, steps, seqlen, BLOCK_L)
            u = _load_rows(u_ptr, row_offs, t, t_mask)
            raw, dt = _load_delta(delta_ptr, row_offs, t, t_mask, bias, HAS_BIAS, SOFTPLUS)
            dtu = dt * u
            y = skip[:, None] * u
            if SEQUENTIAL:
                h, y = _sequential_forward_chunk(A_nat, B_ptr, C_ptr, bc_base, seqlen, chunk, steps, cols, dt, dtu,
                                                 h, y, N, BLOCK_L)
            else:
                h, y = _scan_forward_chunk(A_ptr, B_ptr, C_ptr, bc_base, seqlen, d_offs, t, t_mask, first, last, cols,
                                           dt, dtu, h, y, N, UNROLL)
            _store_rows(y_ptr, row_offs, t, t_mask, y)

    @triton.jit
    def _backward_kernel(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dy_ptr, states_ptr,
        du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,
        seqlen, dim, groups, dims_per_group, state_chunks,
        N: tl.constexpr, NP: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
        HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ATOMIC_BC: tl.constexpr,
        SEQUENTIAL: tl.constexpr, UNROLL: tl.constexpr, KEEP_DECAYS: tl.constexpr,
    ):
        # Walks the chunks backwards, each from its state saved by the forward pass.
        pid_d, pid_b, d_offs, cols, row_offs, batch_group, state_offs = _program_tiles(
            seqlen, dim, groups, dims_per_group, state_chunks, N, NP, BLOCK_D)
        bc_base = batch_group * N * seqlen
        if ATOMIC_BC:
            dbc_base = bc_base
        else:
            # One partial per channel block: (batch, dim / BLOCK_D, N, L), or (..., L, N).
            dbc_base = (pid_b * tl.num_programs(0) + pid_d) * N * seqlen
        n_chunks = tl.cdiv(seqlen, BLOCK_L)
        skip, bias = _load_skip_and_bias(D_ptr, bias_ptr, d_offs, BLOCK_D, HAS_D, HAS_BIAS)
        if SEQUENTIAL:
            A_nat = _load_A(A_ptr, d_offs, cols, N)
        steps, first, last = _chunk_step_masks(BLOCK_L)
        # The adjoint carried from chunk to chunk (the scan's g, the sequential walk's w).
        carried = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
        dA_acc = tl.zeros([BLOCK_D, NP], dtype=tl.float32)
        dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        for rev in range(n_chunks):
            chunk = n_chunks - 1 - rev
            t, t_mask = _chunk_steps(chunk, steps, seqlen, BLOCK_L)
            u = _load_rows(u_ptr, row_offs, t, t_mask)
            dy = _load_rows(dy_ptr, row_offs, t, t_mask)
            raw, dt = _load_delta(delta_ptr, row_offs, t, t_mask, bias, HAS_BIAS, SOFTPLUS)
            if SEQUENTIAL:
                h = tl.load(states_ptr + state_offs + chunk * N, mask=cols[None, :] < N, other=0.0)
                carried, dA_acc, du, ddt = _sequential_backward_chunk(
                    A_nat, B_ptr, C_ptr, dB_ptr, dC_ptr, bc_base, dbc_base, seqlen, chunk, t_mask, steps, cols,
                    u, dy, dt, h, skip, carried, dA_acc, N, NP, BLOCK_D, BLOCK_L, ATOMIC_BC, KEEP_DECAYS)
            else:
                # delta one step ahead: the adjoint at t is carried back by exp(delta_{t+1} A).
                raw_next, dt_next = _load_delta(delta_ptr, row_offs, t + 1, t + 1 < seqlen, bias, HAS_BIAS, SOFTPLUS)
                h = tl.load(states_ptr + state_offs + chunk * N, mask=cols[None, :] < N, other=0.0)
                carried, dA_acc, du, ddt = _scan_backward_chunk(
                    A_ptr, B_ptr, C_ptr, dB_ptr, dC_ptr, bc_base, dbc_base, seqlen, d_offs, t, t_mask, first, last,
                    cols, u, dy, dt, dt_next, h, skip, carried, dA_acc, N, BLOCK_D, BLOCK_L, ATOMIC_BC, UNROLL)
            dD_acc, dbias_acc = _finish_backward_chunk(
                du_ptr, ddelta_ptr, row_offs, t, t_mask, u, dy, raw, du, ddt, dD_acc, dbias_acc, SOFTPLUS)
        _add_channel_grads(dA_ptr, dD_ptr, dbias_ptr, d_offs, cols, dA_acc, dD_acc, dbias_acc, N, HAS_D, HAS_BIAS)


def _block_d(block: int, dims_per_group: int) -> int:
    while block > 1 and dims_per_group % block:
        block //= 2
    return block


def _check_inputs(u, delta, A, B, C, D, z, delta_bias):
    """Validate the inputs as every backend does, and that they share one device; returns
    ``B`` and ``C`` as contiguous ``b x g x n x l``."""
    check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    devices = {t.device for t in (u, delta, A, B, C, D, delta_bias) if t is not None}
    if len(devices) != 1:
        raise ValueError(f"selective_scan_triton: all tensors must be on one device, got {sorted(map(str, devices))}")
    return as_grouped(B).contiguous(), as_grouped(C).contiguous()


def _launch_forward(u, delta, A, B, C, D, delta_bias, softplus, config, save_states):
    # B and C: (batch, groups, N, L) for the scan algorithm, (batch, groups, L, N) for the
    # sequential one (see _kernel_layout).
    batch, dim, seqlen = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    dims_per_group = dim // groups
    block_d = _block_d(config.block_d, dims_per_group)
    n_states = triton.cdiv(seqlen, config.block_l_bwd)
    y = torch.empty_like(u)
    states = u.new_empty((batch, dim, n_states, n_state), dtype=torch.float32) if save_states else y
    dummy = A
    _forward_kernel[(dim // block_d, batch)](
        u, delta, A, B, C,
        D if D is not None else dummy, delta_bias if delta_bias is not None else dummy,
        y, states,
        seqlen, dim, groups, dims_per_group,
        N=n_state, NP=triton.next_power_of_2(n_state), BLOCK_D=block_d, BLOCK_L=config.block_l,
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        SAVE_STATES=save_states, SAVE_STRIDE=config.block_l_bwd // config.block_l,
        SEQUENTIAL=config.algorithm == "sequential", UNROLL=config.unroll, num_warps=config.num_warps,
    )
    return y, (states if save_states else None)


def _launch_backward(dy, u, delta, A, B, C, D, delta_bias, states, softplus, config):
    # Gradients of B and C come back as (batch, groups, N, L) whatever the kernel layout.
    batch, dim, seqlen = u.shape
    groups, n_state = B.shape[1], A.shape[1]
    seq = config.algorithm == "sequential"
    dims_per_group = dim // groups
    block_d = _block_d(config.block_d_bwd, dims_per_group)
    f32 = dict(dtype=torch.float32, device=u.device)
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dA = torch.zeros(A.shape, **f32)
    dD = torch.zeros((dim,), **f32)
    dbias = torch.zeros((dim,), **f32)
    if config.atomic_grads:
        dB = torch.zeros(B.shape, **f32)
        dC = torch.zeros(C.shape, **f32)
    else:
        partial_shape = (batch, dim // block_d) + B.shape[2:]
        dB = torch.empty(partial_shape, **f32)
        dC = torch.empty(partial_shape, **f32)
    dummy = A
    _backward_kernel[(dim // block_d, batch)](
        u, delta, A, B, C,
        D if D is not None else dummy, delta_bias if delta_bias is not None else dummy,
        dy, states,
        du, ddelta, dA, dB, dC, dD, dbias,
        seqlen, dim, groups, dims_per_group, states.shape[2],
        N=n_state, NP=triton.next_power_of_2(n_state), BLOCK_D=block_d, BLOCK_L=config.block_l_bwd,
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        ATOMIC_BC=config.atomic_grads, SEQUENTIAL=seq, UNROLL=config.unroll_bwd, KEEP_DECAYS=config.keep_decays,
        num_warps=config.num_warps_bwd,
    )
    if not config.atomic_grads:
        blocks_per_group = dims_per_group // block_d
        dB = dB.view((batch, groups, blocks_per_group) + B.shape[2:]).sum(2)
        dC = dC.view((batch, groups, blocks_per_group) + B.shape[2:]).sum(2)
    if seq:
        dB, dC = dB.transpose(-1, -2), dC.transpose(-1, -2)
    return du, ddelta, dA, dB, dC, dD, dbias


def _kernel_layout(mat: torch.Tensor, config: ScanKernelConfig) -> torch.Tensor:
    # The sequential algorithm reads one time step's N values at a time: time-major.
    if config.algorithm == "sequential":
        return mat.transpose(-1, -2).contiguous()
    return mat


class _SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, softplus, config):
        save = any(ctx.needs_input_grad[:7])
        B, C = _kernel_layout(B, config), _kernel_layout(C, config)
        y, states = _launch_forward(u, delta, A, B, C, D, delta_bias, softplus, config, save)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, states)
            ctx.softplus = softplus
            ctx.config = config
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, D, delta_bias, states = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias = _launch_backward(
            dy.contiguous(), u, delta, A, B, C, D, delta_bias, states, ctx.softplus, ctx.config
        )
        return (
            du,
            ddelta,
            dA.to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            dD.to(D.dtype) if D is not None else None,
            dbias.to(delta_bias.dtype) if delta_bias is not None else None,
            None,
            None,
        )


@torch.compiler.disable  # torch.compile runs the hand-written kernels as they are
def selective_scan_triton(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False, config: ScanKernelConfig | None = None,
) -> torch.Tensor:
    """Selective scan with fused Triton kernels; differentiable in every tensor input.

    Args:
        u: Input, ``b x d x l``.
        delta: Step sizes before bias and softplus, ``b x d x l``.
        A: State matrix (diagonal per channel), real, ``d x n``.
        B: Input projection, ``b x g x n x l`` (each group of ``d/g`` channels shares
            one) or ``b x n x l``.
        C: Output projection, same shape as ``B``.
        D: Skip weight, ``d``, or None.
        z: Gate, ``b x d x l``, or None; the output is multiplied by ``silu(z)``.
        delta_bias: Added to ``delta`` before the softplus, ``d``, or None.
        delta_softplus: Apply softplus to ``delta + delta_bias``.
        config: Kernel tiling; :func:`default_config` if None.

    Returns:
        ``y``, ``b x d x l``, in the dtype of ``u``.

    Raises:
        RuntimeError: Triton cannot run on the tensors' device (see :func:`is_available`).
        ValueError: The shapes do not fit together.
    """
    B, C = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if not is_available(u.device):
        raise RuntimeError(
            f"selective_scan_triton needs Triton and a CUDA device (or TRITON_INTERPRET=1 on CPU); "
            f"got a tensor on {u.device}. Use the chunked or reference backend instead."
        )
    config = config or default_config()
    if config.algorithm not in ("sequential", "scan"):
        raise ValueError(f"selective_scan_triton: unknown algorithm {config.algorithm!r} (sequential or scan)")
    if config.block_l_bwd % config.block_l:
        raise ValueError(f"selective_scan_triton: block_l_bwd {config.block_l_bwd} is not a multiple of block_l {config.block_l}")
    y = _SelectiveScanFn.apply(
        u.contiguous(),
        delta.contiguous(),
        A.contiguous(),
        B,
        C,
        D.contiguous() if D is not None else None,
        delta_bias.contiguous() if delta_bias is not None else None,
        bool(delta_softplus),
        config,
    )
    if z is not None:
        y = y * F.silu(z)
    return y
