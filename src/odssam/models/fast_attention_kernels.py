"""Triton kernels of the fused relative-position attention, and their launch wrappers.

:func:`launch_rel_attention` computes one SAM ViT block's attention (the contract of
:func:`odssam.models.fast_attention.rel_pos_attention`) from the block's ``qkv`` activations
and per-token relative-position tables, with two kernels:

* ``_rel_terms_kernel`` computes the per-query terms ``rel_h[q, k] = q . table_h[row(q), k]``
  and ``rel_w`` (each query read once; all tokens of an image row or column share a table).
* ``_rel_attention_kernel``, a flash-attention kernel, reads queries, keys and values straight
  from the ``qkv`` activations (window partition and padding are index arithmetic; a padded
  token's key and value are the ``qkv`` bias, as in the official module where padding zeros
  pass through the linear layer), adds ``rel_h[q, row(k)] + rel_w[q, col(k)]`` to the scores
  in registers, and writes the output un-partitioned.

Triton is optional: this module imports without it (:data:`TRITON_IMPORTED` is then False and
the kernels are not defined). On CPU tensors the kernels run only under Triton's interpreter
(``TRITON_INTERPRET=1``), which the tests use.
"""

from __future__ import annotations

from typing import Optional

import torch

try:  # Triton is optional: without it (or without CUDA) the torch backend is used.
    import triton
    import triton.language as tl

    TRITON_IMPORTED = True
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None
    TRITON_IMPORTED = False


def triton_supported(device: torch.device | str | None = None) -> bool:
    """Whether the Triton backend can run on ``device`` (default: the current CUDA device).

    Args:
        device: Device the encoder runs on; ``None`` asks about CUDA in general.

    Returns:
        True when Triton is importable and ``device`` is a CUDA device that is available.
    """
    if not TRITON_IMPORTED or not torch.cuda.is_available():
        return False
    return device is None or torch.device(device).type == "cuda"


def _next_pow2(value: int) -> int:
    return 1 << max(0, int(value) - 1).bit_length()


def _split_head_dim(head_dim: int) -> tuple[int, int]:
    """Split a head dimension into two power-of-two chunks for ``tl.dot`` (80 -> 64 + 16),
    so no multiply-adds are wasted on padding. The second chunk is 0 when not needed."""
    first = 1 << (head_dim.bit_length() - 1)
    rest = head_dim - first
    return first, (max(16, _next_pow2(rest)) if rest else 0)


if TRITON_IMPORTED:

    @triton.jit
    def _load_rows(row_ptrs, cols, row_ok, WIDTH: tl.constexpr, VALID: tl.constexpr, MASK_ROWS: tl.constexpr):
        """Load a (rows x WIDTH) tile whose first VALID columns are real, zeros elsewhere."""
        ptrs = row_ptrs[:, None] + cols[None, :]
        if WIDTH > VALID:
            if MASK_ROWS:
                return tl.load(ptrs, mask=row_ok[:, None] & (cols < VALID)[None, :], other=0.0)
            return tl.load(ptrs, mask=(cols < VALID)[None, :], other=0.0)
        if MASK_ROWS:
            return tl.load(ptrs, mask=row_ok[:, None], other=0.0)
        return tl.load(ptrs)

    @triton.jit
    def _rel_terms_kernel(
        qkv_ptr, table_ptr, out_ptr,
        num_lines, line_len,
        s_qkv_b, s_qkv_line, s_qkv_pos,
        s_tab_line, s_tab_k,
        s_out_b, s_out_n, s_out_k, s_out_line, s_out_pos,
        NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
        K: tl.constexpr, K_P: tl.constexpr, LEN_P: tl.constexpr, IEEE_DOT: tl.constexpr,
    ):
        """out[b, n, k, line, pos] = q[b, line, pos, n, :] . table[line, k, :] for one line of
        tokens (an image row for rel_h, a column for rel_w); all tokens of a line share the
        table row, so it is a plain matrix product."""
        pid = tl.program_id(0)
        head = tl.program_id(1)
        b = pid // num_lines
        line = pid % num_lines
        pos = tl.arange(0, LEN_P)
        pos_ok = pos < line_len
        kk = tl.arange(0, K_P)
        q_row = qkv_ptr + b.to(tl.int64) * s_qkv_b + line * s_qkv_line + pos * s_qkv_pos + head * HEAD_DIM
        t_row = table_ptr + line * s_tab_line + kk * s_tab_k
        PRECISION: tl.constexpr = "ieee" if IEEE_DOT else "tf32"
        d0 = tl.arange(0, D0)
        acc = tl.dot(_load_rows(q_row, d0, pos_ok, D0, HEAD_DIM, True),
                     tl.trans(_load_rows(t_row, d0, kk < K, D0, HEAD_DIM, True)), input_precision=PRECISION)
        if D1 > 0:
            d1 = tl.arange(0, D1)
            acc = tl.dot(_load_rows(q_row + D0, d1, pos_ok, D1, HEAD_DIM - D0, True),
                         tl.trans(_load_rows(t_row + D0, d1, kk < K, D1, HEAD_DIM - D0, True)), acc,
                         input_precision=PRECISION)
        dst = out_ptr + b.to(tl.int64) * s_out_b + head * s_out_n + line * s_out_line + pos * s_out_pos
        tl.store(dst[:, None] + kk[None, :] * s_out_k, acc, mask=pos_ok[:, None])

    @triton.jit
    def _rel_attention_kernel(
        qkv_ptr, rel_h_ptr, rel_w_ptr, bias_ptr, out_ptr,
        height, width, windows_x, windows_per_image,
        s_qkv_b, s_qkv_y, s_qkv_x,
        s_out_b, s_out_y, s_out_x,
        s_rh_b, s_rh_n, s_rh_k, s_rh_y, s_rh_x,
        s_rw_b, s_rw_n, s_rw_k, s_rw_y, s_rw_x,
        qk_scale,
        NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
        ROWS: tl.constexpr, COLS: tl.constexpr, ROWS_P: tl.constexpr, COLS_P: tl.constexpr,
        HAS_REL: tl.constexpr, ROW_ALIGNED: tl.constexpr, PAD_WITH_BIAS: tl.constexpr,
        MASK_Q: tl.constexpr, MASK_K: tl.constexpr, PRESCALE_Q: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IEEE_DOT: tl.constexpr,
    ):
        """Flash attention over one ROWS x COLS window (the whole image for global blocks) of
        one head, with decomposed relative-position terms added to the scores in registers.

        Program (pid_m, g): queries pid_m*BLOCK_M.. of group g = (image, window, head). Head
        dims are loaded as a D0 chunk and an optional D1 chunk (80 = 64 + 16), or as one
        zero-padded D0 chunk. Scores are kept in log2 units (exp2 softmax).
        """
        LOG2E: tl.constexpr = 1.4426950408889634
        LENGTH: tl.constexpr = ROWS * COLS
        CHANNELS: tl.constexpr = NUM_HEADS * HEAD_DIM
        D0_VALID: tl.constexpr = D0 if D0 < HEAD_DIM else HEAD_DIM
        D1_VALID: tl.constexpr = HEAD_DIM - D0_VALID
        PRECISION: tl.constexpr = "ieee" if IEEE_DOT else "tf32"
        REL_DTYPE: tl.constexpr = tl.float32 if IEEE_DOT else tl.float16
        pid_m = tl.program_id(0)
        group = tl.program_id(1)
        head = group % NUM_HEADS
        image_window = group // NUM_HEADS
        b = image_window // windows_per_image
        window = image_window % windows_per_image
        y0 = (window // windows_x) * ROWS
        x0 = (window % windows_x) * COLS
        qkv_img = qkv_ptr + b.to(tl.int64) * s_qkv_b + head * HEAD_DIM
        qk_scale_log2 = qk_scale * LOG2E

        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        q_y = y0 + offs_m // COLS
        q_x = x0 + offs_m % COLS
        q_ok = (offs_m < LENGTH) & (q_y < height) & (q_x < width)
        q_ptr = qkv_img + q_y * s_qkv_y + q_x * s_qkv_x
        d0 = tl.arange(0, D0)
        q0 = _load_rows(q_ptr, d0, q_ok, D0, D0_VALID, MASK_Q)
        if PRESCALE_Q:  # one multiply per query element instead of one per score
            q0 = (q0 * qk_scale_log2).to(q0.dtype)
        if D1 > 0:
            d1 = tl.arange(0, D1)
            q1 = _load_rows(q_ptr + D0, d1, q_ok, D1, D1_VALID, MASK_Q)
            if PRESCALE_Q:
                q1 = (q1 * qk_scale_log2).to(q1.dtype)
        if PAD_WITH_BIAS:
            bias_k0 = tl.load(bias_ptr + CHANNELS + head * HEAD_DIM + d0, mask=d0 < D0_VALID, other=0.0)
            bias_v0 = tl.load(bias_ptr + 2 * CHANNELS + head * HEAD_DIM + d0, mask=d0 < D0_VALID, other=0.0)
            if D1 > 0:
                bias_k1 = tl.load(bias_ptr + CHANNELS + head * HEAD_DIM + D0 + d1, mask=d1 < D1_VALID, other=0.0)
                bias_v1 = tl.load(bias_ptr + 2 * CHANNELS + head * HEAD_DIM + D0 + d1, mask=d1 < D1_VALID,
                                  other=0.0)

        if HAS_REL:
            rh_ptr = rel_h_ptr + b.to(tl.int64) * s_rh_b + head * s_rh_n + q_y * s_rh_y + q_x * s_rh_x
            rw_ptr = rel_w_ptr + b.to(tl.int64) * s_rw_b + head * s_rw_n + q_y * s_rw_y + q_x * s_rw_x
            if ROW_ALIGNED:
                # Each key tile is one full grid row: rel_w is the same tile every time, and
                # rel_h is one column, stored k-major so that it is a contiguous load. The next
                # column is fetched one iteration ahead.
                rel_w = tl.load(rw_ptr[:, None] + tl.arange(0, BLOCK_N)[None, :] * s_rw_k,
                                mask=q_ok[:, None], other=0.0) * LOG2E
                rel_h_next = tl.load(rh_ptr, mask=q_ok, other=0.0) * LOG2E
            else:
                # float16 operands for the one-hot products: the same 10-bit mantissa as tf32 and
                # the 16-bit matrix path of the other products (exact for the one-hot side).
                rel_h = tl.load(rh_ptr[:, None] + tl.arange(0, ROWS_P)[None, :] * s_rh_k,
                                mask=q_ok[:, None], other=0.0)
                rel_w = tl.load(rw_ptr[:, None] + tl.arange(0, COLS_P)[None, :] * s_rw_k,
                                mask=q_ok[:, None], other=0.0)
                rel_h = (rel_h * LOG2E).to(REL_DTYPE)
                rel_w = (rel_w * LOG2E).to(REL_DTYPE)

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc0 = tl.zeros([BLOCK_M, D0], tl.float32)
        if D1 > 0:
            acc1 = tl.zeros([BLOCK_M, D1], tl.float32)

        for start_n in range(0, LENGTH, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            k_row = offs_n // COLS
            k_col = offs_n % COLS
            k_y = y0 + k_row
            k_x = x0 + k_col
            in_window = offs_n < LENGTH
            in_image = in_window & (k_y < height) & (k_x < width)
            kv_ptr = qkv_img + k_y * s_qkv_y + k_x * s_qkv_x
            k0 = _load_rows(kv_ptr + CHANNELS, d0, in_image, D0, D0_VALID, MASK_K)
            v0 = _load_rows(kv_ptr + 2 * CHANNELS, d0, in_image, D0, D0_VALID, MASK_K)
            if PAD_WITH_BIAS:
                k0 = tl.where(in_image[:, None], k0, bias_k0[None, :])
                v0 = tl.where(in_image[:, None], v0, bias_v0[None, :])
            if D1 > 0:
                k1 = _load_rows(kv_ptr + CHANNELS + D0, d1, in_image, D1, D1_VALID, MASK_K)
                v1 = _load_rows(kv_ptr + 2 * CHANNELS + D0, d1, in_image, D1, D1_VALID, MASK_K)
                if PAD_WITH_BIAS:
                    k1 = tl.where(in_image[:, None], k1, bias_k1[None, :])
                    v1 = tl.where(in_image[:, None], v1, bias_v1[None, :])

            scores = tl.dot(q0, tl.trans(k0), input_precision=PRECISION)
            if D1 > 0:
                scores = tl.dot(q1, tl.trans(k1), scores, input_precision=PRECISION)
            if not PRESCALE_Q:
                scores = scores * qk_scale_log2
            if HAS_REL:
                if ROW_ALIGNED:
                    rel_h_col = rel_h_next
                    rel_h_next = tl.load(rh_ptr + (start_n // COLS + 1) * s_rh_k,
                                         mask=q_ok & (start_n + BLOCK_N < LENGTH), other=0.0) * LOG2E
                    scores += rel_h_col[:, None] + rel_w
                else:
                    # Gather rel_h[q, row(k)] and rel_w[q, col(k)] as products with one-hot
                    # matrices: tensor cores instead of per-element loads.
                    hot_h = (tl.arange(0, ROWS_P)[:, None] == k_row[None, :]).to(REL_DTYPE)
                    hot_w = (tl.arange(0, COLS_P)[:, None] == k_col[None, :]).to(REL_DTYPE)
                    scores = tl.dot(rel_h, hot_h, scores, input_precision=PRECISION)
                    scores = tl.dot(rel_w, hot_w, scores, input_precision=PRECISION)
            if MASK_K:
                scores = tl.where(in_window[None, :], scores, float("-inf"))

            m_new = tl.maximum(m_i, tl.max(scores, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(scores - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            p = p.to(v0.dtype)
            acc0 = tl.dot(p, v0, acc0 * alpha[:, None], input_precision=PRECISION)
            if D1 > 0:
                acc1 = tl.dot(p, v1, acc1 * alpha[:, None], input_precision=PRECISION)
            m_i = m_new

        out_ptrs = out_ptr + b.to(tl.int64) * s_out_b + q_y * s_out_y + q_x * s_out_x + head * HEAD_DIM
        inv_l = 1.0 / l_i
        out_mask = (d0 < D0_VALID)[None, :]
        if MASK_Q:
            out_mask = out_mask & q_ok[:, None]
        tl.store(out_ptrs[:, None] + d0[None, :], (acc0 * inv_l[:, None]).to(out_ptr.dtype.element_ty),
                 mask=out_mask)
        if D1 > 0:
            out_mask1 = (d1 < D1_VALID)[None, :]
            if MASK_Q:
                out_mask1 = out_mask1 & q_ok[:, None]
            tl.store(out_ptrs[:, None] + D0 + d1[None, :], (acc1 * inv_l[:, None]).to(out_ptr.dtype.element_ty),
                     mask=out_mask1)


# Launch settings per attention shape; overridable (e.g. by the benchmark) without edits.
# Keys: "window" / "global". BLOCK_M, BLOCK_N, num_warps, num_stages as usual; split_head:
# head dim as two exact power-of-two chunks (80 = 64 + 16) rather than one zero-padded chunk;
# prescale_q: fold the softmax scale into q (rounded to q's dtype, as the official q * scale).
# Defaults: the fastest correct configs of a sweep for ViT-H at batch 8 on an H100 (prescaling
# q measured slower there: the scaled q no longer feeds the matrix units straight from memory).
KERNEL_CONFIGS: dict[str, dict] = {
    "window": {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 2, "split_head": True,
               "prescale_q": False},
    "global": {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3, "split_head": True,
               "prescale_q": False},
}


def _head_chunks(head_dim: int, split: bool) -> tuple[int, int]:
    return _split_head_dim(head_dim) if split else (max(16, _next_pow2(head_dim)), 0)


def _rel_terms_triton(qkv, table, num_heads, along_rows: bool, k_size: int, k_major: bool) -> torch.Tensor:
    """BxHxWx3C qkv and an (H or W)xKxC table -> BxnHxK_PxHxW float32 relative terms.

    ``k_major`` stores one k for consecutive tokens contiguously (the global kernel reads one
    key row's column per step); otherwise the K_P values of a token are contiguous (the window
    kernel reads whole rows once; the k-major layout measured 25 % slower there).
    """
    batch, height, width, _ = qkv.shape
    head_dim = qkv.shape[-1] // (3 * num_heads)
    d0, d1 = _split_head_dim(head_dim)
    k_pad = max(16, _next_pow2(k_size))
    if k_major:
        out = torch.empty(batch, num_heads, k_pad, height, width, device=qkv.device, dtype=torch.float32)
    else:
        out = torch.empty(batch, num_heads, height, width, k_pad, device=qkv.device, dtype=torch.float32)
        out = out.permute(0, 1, 4, 2, 3)
    table = table.to(qkv.dtype).contiguous()
    s_b, s_y, s_x, _ = qkv.stride()
    o_b, o_n, o_k, o_y, o_x = out.stride()
    if along_rows:  # rel_h: one program per image row y, tokens along x
        lines, line_len = height, width
        s_line, s_pos, o_line, o_pos = s_y, s_x, o_y, o_x
    else:  # rel_w: one program per image column x, tokens along y
        lines, line_len = width, height
        s_line, s_pos, o_line, o_pos = s_x, s_y, o_x, o_y
    grid = (batch * lines, num_heads)
    _rel_terms_kernel[grid](
        qkv, table, out, lines, line_len,
        s_b, s_line, s_pos, table.stride(0), table.stride(1),
        o_b, o_n, o_k, o_line, o_pos,
        NUM_HEADS=num_heads, HEAD_DIM=head_dim, D0=d0, D1=d1,
        K=k_size, K_P=k_pad, LEN_P=max(16, _next_pow2(line_len)), IEEE_DOT=qkv.dtype == torch.float32,
        num_warps=4,
    )
    return out


def launch_rel_attention(
    qkv: torch.Tensor, line_tables: Optional[tuple[torch.Tensor, torch.Tensor]], qkv_bias: Optional[torch.Tensor],
    num_heads: int, window_size: int, scale: float,
) -> torch.Tensor:
    """Fused relative-position attention of one block.

    Args:
        qkv: BxHxWx3C output of the block's ``qkv`` linear layer on the un-padded tokens.
        line_tables: Relative-position tables of each token row (HxSxhead_dim; row ``y`` is
            the table of in-window row ``y % S``) and of each token column (WxSxhead_dim), S
            the window side (H or W for global attention); ``None`` for no relative positions.
        qkv_bias: 3C bias of the ``qkv`` layer: the q/k/v of a padded token (None: zeros).
        num_heads: Number of heads (C = num_heads * head_dim).
        window_size: Side S of the attention windows; 0 for global attention.
        scale: Multiplier of q.k.

    Returns:
        BxHxWxC attention output, before the block's ``proj`` layer.
    """
    qkv = qkv.contiguous()
    batch, height, width, three_c = qkv.shape
    channels = three_c // 3
    head_dim = channels // num_heads
    if window_size > 0:
        rows = cols = window_size
        windows_y, windows_x = -(-height // rows), -(-width // cols)
    else:
        rows, cols = height, width
        windows_y = windows_x = 1
    padded = windows_y * rows != height or windows_x * cols != width
    has_rel = line_tables is not None
    config = dict(KERNEL_CONFIGS["window" if window_size > 0 else "global"])
    d0, d1 = _head_chunks(head_dim, config.pop("split_head", True))
    prescale_q = config.pop("prescale_q", False) and qkv.dtype != torch.float32
    block_m, block_n = config.pop("BLOCK_M"), config["BLOCK_N"]
    rows_p, cols_p = max(16, _next_pow2(rows)), max(16, _next_pow2(cols))
    row_aligned = has_rel and cols == cols_p and block_n == cols
    if has_rel:
        rel_h = _rel_terms_triton(qkv, line_tables[0], num_heads, True, rows, row_aligned)
        rel_w = _rel_terms_triton(qkv, line_tables[1], num_heads, False, cols, row_aligned)
    else:
        rel_h = rel_w = qkv.new_zeros(1, 1, 1, 1, 1, dtype=torch.float32)
    if padded and qkv_bias is None:
        qkv_bias = qkv.new_zeros(three_c)
    bias = qkv_bias.to(qkv.dtype).contiguous() if padded else qkv
    length = rows * cols
    out = torch.empty(batch, height, width, channels, device=qkv.device, dtype=qkv.dtype)
    grid = (triton.cdiv(length, block_m), batch * windows_y * windows_x * num_heads)
    _rel_attention_kernel[grid](
        qkv, rel_h, rel_w, bias, out,
        height, width, windows_x, windows_y * windows_x,
        *qkv.stride()[:3], *out.stride()[:3], *rel_h.stride(), *rel_w.stride(),
        scale,
        NUM_HEADS=num_heads, HEAD_DIM=head_dim, D0=d0, D1=d1,
        ROWS=rows, COLS=cols, ROWS_P=rows_p, COLS_P=cols_p,
        HAS_REL=has_rel, ROW_ALIGNED=row_aligned, PAD_WITH_BIAS=padded,
        MASK_Q=padded or length % block_m != 0, MASK_K=padded or length % block_n != 0,
        PRESCALE_Q=prescale_q, BLOCK_M=block_m, IEEE_DOT=qkv.dtype == torch.float32, **config,
    )
    return out
