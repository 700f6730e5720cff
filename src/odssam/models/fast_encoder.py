"""A faster forward pass for SAM's ViT image encoder, same parameters, same function.

The official ``segment_anything`` encoder spends most of its time moving attention maps
through memory: it materialises every score matrix, adds the decomposed relative-position
terms to it with broadcast adds, and copies tokens into padded 14x14 windows and back.
:func:`accelerate_image_encoder` wraps an official ``ImageEncoderViT`` in
:class:`FastImageEncoderViT`, which reuses the very same sub-modules (so the state-dict keys
and official checkpoints are unchanged) and runs each block as::

    qkv = Linear(LayerNorm(x))              on the H x W tokens only (no padded copies)
    o   = rel_pos_attention(qkv, ...)       one fused kernel per block
    x   = x + Linear(o);  x = x + MLP(LayerNorm(x))

On CUDA in bf16/fp16, each residual add and the LayerNorm after it are one Triton kernel
(:mod:`odssam.models.fused_norm`), and the MLP's first linear layer applies its GELU in the
cuBLASLt epilogue (:func:`fused_mlp`).

``rel_pos_attention`` has two backends:

* ``triton`` (CUDA): a flash-attention kernel that reads queries, keys and values straight
  from the ``qkv`` activations (window partition and padding are index arithmetic; a padded
  token's key and value are the ``qkv`` bias, as in the official module where padding zeros
  pass through the linear layer), adds ``rel_h[q, row(k)] + rel_w[q, col(k)]`` to the scores
  in registers, and writes the output un-partitioned. The per-query terms ``rel_h`` and
  ``rel_w`` come from a small kernel that reads each query once.
* ``torch`` (any device): windows are formed explicitly and the relative-position terms are
  folded into the dot product, appending ``rel_h``/``rel_w`` to each query and the one-hot
  row/column of each key to each key, so one ``F.scaled_dot_product_attention`` call computes
  the scores without an additive mask.

Both compute the official function (the official block applies ``proj`` to padded windows and
then crops; projecting only the kept tokens is identical because ``proj`` acts per token). The
patch embedding, a convolution whose stride equals its kernel, runs as one matrix product; it
also leaves the tokens contiguous (the official permuted convolution output makes every later
element-wise op and norm work on strided data).

``benchmarks/bench_sam_encoder.py`` measures it against the official module.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from odssam.models.fused_norm import add_layer_norm

try:  # Triton is optional: without it (or without CUDA) the torch backend is used.
    import triton
    import triton.language as tl

    _TRITON_IMPORTED = True
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None
    _TRITON_IMPORTED = False

BACKENDS = ("auto", "triton", "torch", "official")

FAST_ENCODER_AVAILABLE: bool = _TRITON_IMPORTED and torch.cuda.is_available()
"""True when the fused Triton attention can run here (Triton installed and a CUDA device)."""


def triton_supported(device: torch.device | str | None = None) -> bool:
    """Whether the Triton backend can run on ``device`` (default: the current CUDA device).

    Args:
        device: Device the encoder runs on; ``None`` asks about CUDA in general.

    Returns:
        True when Triton is importable and ``device`` is a CUDA device that is available.
    """
    if not _TRITON_IMPORTED or not torch.cuda.is_available():
        return False
    return device is None or torch.device(device).type == "cuda"


def default_fast(device: torch.device | str | None = None) -> bool:
    """Default of the ``fast`` switch: on wherever the fused kernels can run (CUDA)."""
    return triton_supported(device)


# --------------------------------------------------------------------------------------
# Relative-position tables
# --------------------------------------------------------------------------------------


def relative_position_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """Table of relative-position embeddings for queries and keys on a line of ``size``.

    Entry ``[i, j]`` is the embedding of offset ``i - j``; ``rel_pos`` holds offsets
    ``-(size-1) .. size-1`` (resampled linearly when it was trained for another length).

    Args:
        rel_pos: (2*S'-1)xC learned embeddings, S' the size they were trained for.
        size: Number of query (= key) positions S along the axis.

    Returns:
        SxSxC table.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        resampled = F.interpolate(rel_pos.t()[None].float(), size=length, mode="linear")
        rel_pos = resampled[0].t().to(rel_pos.dtype)
    positions = torch.arange(size, device=rel_pos.device)
    offsets = positions[:, None] - positions[None, :] + (size - 1)
    return rel_pos[offsets]


def _line_tables(rel_pos: torch.Tensor, window: int, extent: int) -> torch.Tensor:
    """Per-token table along one image axis: row ``t`` is the table of in-window position
    ``t % window``. Returns ``extent x window x C``."""
    table = relative_position_table(rel_pos, window)
    return table[torch.arange(extent, device=rel_pos.device) % window]


# --------------------------------------------------------------------------------------
# torch backend (any device)
# --------------------------------------------------------------------------------------


def _partition(tokens: torch.Tensor, window: int) -> torch.Tensor:
    """BxHxWxD (H, W multiples of ``window``) -> (B*nW)x(window*window)xD."""
    batch, height, width, depth = tokens.shape
    tokens = tokens.view(batch, height // window, window, width // window, window, depth)
    return tokens.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, depth)


def _unpartition(windows: torch.Tensor, window: int, batch: int, height: int, width: int) -> torch.Tensor:
    """(B*nW)x(window*window)xD -> BxHxWxD, the inverse of :func:`_partition`."""
    depth = windows.shape[-1]
    windows = windows.view(batch, height // window, width // window, window, window, depth)
    return windows.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, depth)


def _attention_torch(
    qkv: torch.Tensor,
    num_heads: int,
    window_size: int,
    rel_pos_h: Optional[torch.Tensor],
    rel_pos_w: Optional[torch.Tensor],
    qkv_bias: Optional[torch.Tensor],
    scale: float,
    fold: Optional[bool] = None,
) -> torch.Tensor:
    """Attention with relative positions through ``F.scaled_dot_product_attention``.

    Args:
        qkv: BxHxWx3C output of the block's ``qkv`` linear layer.
        fold: Fold the relative terms into the dot product (no score-sized tensor; the choice
            on CUDA) or pass them as an additive mask (faster on CPUs, whose fused kernel is
            slow for the longer folded head dim). ``None``: fold on CUDA only.

    Returns:
        BxHxWxC attention output (before ``proj``).
    """
    if fold is None:
        fold = qkv.is_cuda
    batch, height, width, three_c = qkv.shape
    channels = three_c // 3
    head_dim = channels // num_heads
    if window_size > 0:
        padded_h = -(-height // window_size) * window_size
        padded_w = -(-width // window_size) * window_size
        if (padded_h, padded_w) != (height, width):
            # A padded token is zero after the norm, so its q/k/v are exactly the qkv bias.
            fill = qkv_bias if qkv_bias is not None else qkv.new_zeros(three_c)
            padded = fill.to(qkv.dtype).expand(batch, padded_h, padded_w, three_c).clone()
            padded[:, :height, :width] = qkv
            qkv = padded
        rows = cols = window_size
        tokens = _partition(qkv, window_size)
    else:
        padded_h, padded_w = height, width
        rows, cols = height, width
        tokens = qkv.reshape(batch, height * width, three_c)
    groups, length = tokens.shape[:2]
    q, k, v = tokens.view(groups, length, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    if rel_pos_h is not None and rel_pos_w is not None:
        table_h = relative_position_table(rel_pos_h, rows).to(q.dtype)
        table_w = relative_position_table(rel_pos_w, cols).to(q.dtype)
        grid_q = q.reshape(groups, num_heads, rows, cols, head_dim)
        rel_h = torch.einsum("gnijc,ikc->gnijk", grid_q, table_h).reshape(groups, num_heads, length, rows)
        rel_w = torch.einsum("gnijc,jkc->gnijk", grid_q, table_w).reshape(groups, num_heads, length, cols)
        if fold:
            # score(q, k) = scale q.k + rel_h[q, row(k)] + rel_w[q, col(k)]: append the terms to
            # q and the one-hot row/column of every key to k, then one SDPA call with scale 1.
            key_pos = torch.arange(length, device=q.device)
            one_hot = torch.cat(
                [F.one_hot(key_pos // cols, rows), F.one_hot(key_pos % cols, cols)], dim=-1
            ).to(q.dtype)
            q = torch.cat([q * scale, rel_h, rel_w], dim=-1)
            k = torch.cat([k, one_hot.expand(groups, num_heads, length, rows + cols)], dim=-1)
            out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        else:
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(groups, num_heads, length, length)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    else:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)

    out = out.transpose(1, 2).reshape(groups, length, channels)
    if window_size > 0:
        out = _unpartition(out, window_size, batch, padded_h, padded_w)
        return out[:, :height, :width]
    return out.view(batch, height, width, channels)


# --------------------------------------------------------------------------------------
# Triton backend (CUDA)
# --------------------------------------------------------------------------------------


def _next_pow2(value: int) -> int:
    return 1 << max(0, int(value) - 1).bit_length()


def _split_head_dim(head_dim: int) -> tuple[int, int]:
    """Split a head dimension into two power-of-two chunks for ``tl.dot`` (80 -> 64 + 16),
    so no multiply-adds are wasted on padding. The second chunk is 0 when not needed."""
    first = 1 << (head_dim.bit_length() - 1)
    rest = head_dim - first
    return first, (max(16, _next_pow2(rest)) if rest else 0)


if _TRITON_IMPORTED:

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


def _attention_triton(
    qkv: torch.Tensor,
    num_heads: int,
    window_size: int,
    rel_pos_h: Optional[torch.Tensor],
    rel_pos_w: Optional[torch.Tensor],
    qkv_bias: Optional[torch.Tensor],
    scale: float,
) -> torch.Tensor:
    """Fused relative-position attention; same contract as :func:`_attention_torch`."""
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
    has_rel = rel_pos_h is not None and rel_pos_w is not None
    config = dict(KERNEL_CONFIGS["window" if window_size > 0 else "global"])
    d0, d1 = _head_chunks(head_dim, config.pop("split_head", True))
    prescale_q = config.pop("prescale_q", False) and qkv.dtype != torch.float32
    block_m, block_n = config.pop("BLOCK_M"), config["BLOCK_N"]
    rows_p, cols_p = max(16, _next_pow2(rows)), max(16, _next_pow2(cols))
    row_aligned = has_rel and cols == cols_p and block_n == cols
    if has_rel:
        rel_h = _rel_terms_triton(qkv, _line_tables(rel_pos_h, rows, height), num_heads, True, rows, row_aligned)
        rel_w = _rel_terms_triton(qkv, _line_tables(rel_pos_w, cols, width), num_heads, False, cols, row_aligned)
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

if _TRITON_IMPORTED:
    # An opaque operator for torch.compile: Inductor fuses the norms and residual adds around
    # it and calls the Triton kernels as they are.
    @torch.library.custom_op("odssam::rel_pos_attention", mutates_args=())
    def _rel_pos_attention_op(
        qkv: torch.Tensor,
        rel_pos_h: Optional[torch.Tensor],
        rel_pos_w: Optional[torch.Tensor],
        qkv_bias: Optional[torch.Tensor],
        num_heads: int,
        window_size: int,
        scale: float,
    ) -> torch.Tensor:
        return _attention_triton(qkv, num_heads, window_size, rel_pos_h, rel_pos_w, qkv_bias, scale)

    @_rel_pos_attention_op.register_fake
    def _rel_pos_attention_fake(qkv, rel_pos_h, rel_pos_w, qkv_bias, num_heads, window_size, scale):
        batch, height, width, three_c = qkv.shape
        return qkv.new_empty(batch, height, width, three_c // 3)


def resolve_backend(backend: str, qkv: torch.Tensor, num_heads: int) -> str:
    """Pick the attention backend for a ``qkv`` tensor.

    Args:
        backend: One of :data:`BACKENDS` except ``official``.
        qkv: BxHxWx3C activations the attention will read.
        num_heads: Heads of the block.

    Returns:
        ``"triton"`` or ``"torch"``.

    Raises:
        ValueError: Unknown backend, or ``triton`` requested where it cannot run.
    """
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"unknown attention backend {backend!r}; expected auto, triton or torch")
    if backend == "torch":
        return "torch"
    head_dim = qkv.shape[-1] // (3 * num_heads)
    fits = (
        triton_supported(qkv.device)
        and qkv.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and head_dim >= 16
    )
    if backend == "triton" and not fits:
        raise ValueError(
            "the triton attention backend needs Triton, a CUDA tensor of float16/bfloat16/float32 "
            f"and a head dim >= 16 (got device {qkv.device}, dtype {qkv.dtype}, head dim {head_dim})"
        )
    return "triton" if fits else "torch"


def rel_pos_attention(
    qkv: torch.Tensor,
    num_heads: int,
    window_size: int,
    rel_pos_h: Optional[torch.Tensor],
    rel_pos_w: Optional[torch.Tensor],
    qkv_bias: Optional[torch.Tensor],
    scale: float,
    backend: str = "auto",
) -> torch.Tensor:
    """Multi-head attention of a SAM ViT block with decomposed relative positions.

    Args:
        qkv: BxHxWx3C output of the block's ``qkv`` linear layer on the un-padded tokens.
        num_heads: Number of heads (C = num_heads * head_dim).
        window_size: Side of the attention windows; 0 for global attention.
        rel_pos_h: (2S-1)xhead_dim embeddings along rows, S the window (or grid) side;
            ``None`` together with ``rel_pos_w`` for no relative positions.
        rel_pos_w: (2S-1)xhead_dim embeddings along columns.
        qkv_bias: 3C bias of the ``qkv`` layer: the q/k/v of a padded token (None: zeros).
        scale: Multiplier of q.k (1/sqrt(head_dim) in SAM).
        backend: ``auto`` (Triton on CUDA, else torch), ``triton`` or ``torch``.

    Returns:
        BxHxWxC attention output, before the block's ``proj`` layer.
    """
    if resolve_backend(backend, qkv, num_heads) == "triton":
        return _rel_pos_attention_op(qkv, rel_pos_h, rel_pos_w, qkv_bias, num_heads, window_size, scale)
    return _attention_torch(qkv, num_heads, window_size, rel_pos_h, rel_pos_w, qkv_bias, scale)


# --------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------


def _patch_embed(patch_embed: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Bx3xSxS -> Bx(S/p)x(S/p)xC, the official ``PatchEmbed`` as one matrix product.

    A convolution whose stride equals its kernel is a linear layer on flattened patches; with
    3 input channels cuDNN picks a slow kernel for it in bfloat16 (about 4 ms for a batch of
    8 at 1024 on an H100), the matrix product takes a fraction of that.
    """
    conv = patch_embed.proj
    kernel_h, kernel_w = conv.kernel_size
    batch, channels, height, width = images.shape
    if (
        tuple(conv.stride) != (kernel_h, kernel_w)
        or tuple(conv.padding) != (0, 0)
        or tuple(conv.dilation) != (1, 1)
        or conv.groups != 1
        or height % kernel_h
        or width % kernel_w
    ):
        return patch_embed(images)
    rows, cols = height // kernel_h, width // kernel_w
    patches = images.view(batch, channels, rows, kernel_h, cols, kernel_w).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, rows, cols, channels * kernel_h * kernel_w)
    return F.linear(patches, conv.weight.reshape(conv.out_channels, -1), conv.bias)


def _reduced_precision(x: torch.Tensor) -> torch.dtype | None:
    """The bf16/fp16 dtype a CUDA computation on ``x`` runs in, or None for full precision."""
    if not x.is_cuda:
        return None
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
    else:
        dtype = x.dtype
    return dtype if dtype in (torch.bfloat16, torch.float16) else None


def fused_mlp(mlp: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The official ``MLPBlock`` with ``lin1`` and its GELU as one matrix product in ``dtype``.

    On CUDA, cuBLASLt applies the GELU in the product's epilogue, saving a full pass over the
    hidden activations (Bx64x64x5120 for ViT-H). Its GELU is the tanh approximation (within
    5e-4 of the exact one, well below bf16 rounding), so the encoder uses this only where the
    computation is in bf16/fp16 anyway (:func:`_fusion_dtype`). On the CPU PyTorch computes the exact GELU.

    Args:
        mlp: ``segment_anything`` ``MLPBlock`` (``lin1`` -> GELU -> ``lin2``).
        x: ...xC tokens.
        dtype: Dtype of the fused product.

    Returns:
        ...xC, as ``mlp(x)``.
    """
    lin1 = mlp.lin1
    hidden = torch._addmm_activation(
        lin1.bias.to(dtype), x.reshape(-1, x.shape[-1]).to(dtype), lin1.weight.to(dtype).t(), use_gelu=True
    )
    return mlp.lin2(hidden.view(*x.shape[:-1], hidden.shape[-1]))


def _fusion_dtype(x: torch.Tensor, backend: str) -> torch.dtype | None:
    """Low-precision dtype of the fused norm and MLP kernels, or None to run the official ops
    (full precision, the CPU, or the torch backend forced)."""
    return _reduced_precision(x) if backend != "torch" else None


def _mlp_forward(mlp: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    fusable = (
        dtype is not None
        and type(mlp.act) is nn.GELU
        and mlp.act.approximate == "none"
        and mlp.lin1.bias is not None
    )
    return fused_mlp(mlp, x, dtype) if fusable else mlp(x)


def _attention_update(block: nn.Module, normed: torch.Tensor, backend: str) -> torch.Tensor:
    """A block's attention branch on its normalised input, ``proj`` included. BxHxWxC."""
    attn = block.attn
    qkv = attn.qkv(normed)
    rel_h = attn.rel_pos_h if attn.use_rel_pos else None
    rel_w = attn.rel_pos_w if attn.use_rel_pos else None
    out = rel_pos_attention(
        qkv, attn.num_heads, block.window_size, rel_h, rel_w, attn.qkv.bias, attn.scale, backend
    )
    return attn.proj(out)


def _block_forward(block: nn.Module, x: torch.Tensor, backend: str) -> torch.Tensor:
    """One official ``Block`` computed with :func:`rel_pos_attention`. x: BxHxWxC."""
    dtype = _fusion_dtype(x, backend)
    x = x + _attention_update(block, block.norm1(x), backend)
    return x + _mlp_forward(block.mlp, block.norm2(x), dtype)


def _blocks_forward(blocks: nn.ModuleList, x: torch.Tensor, backend: str) -> torch.Tensor:
    """The blocks in sequence, as :func:`_block_forward` each, BxHxWxC -> BxHxWxC.

    On CUDA at reduced precision (unless the torch backend is forced), each residual add runs
    fused with the LayerNorm that reads its result (:func:`~odssam.models.fused_norm.add_layer_norm`).
    """
    dtype = _fusion_dtype(x, backend)
    normed = blocks[0].norm1(x)
    for index, block in enumerate(blocks):
        x, normed = add_layer_norm(x, _attention_update(block, normed, backend), block.norm2, dtype)
        update = _mlp_forward(block.mlp, normed, dtype)
        if index + 1 < len(blocks):
            x, normed = add_layer_norm(x, update, blocks[index + 1].norm1, dtype)
        else:
            x = x + update
    return x


class FastImageEncoderViT(nn.Module):
    """SAM's ViT image encoder with fused relative-position attention.

    Shares ``patch_embed``, ``pos_embed``, ``blocks`` and ``neck`` with the official module it
    wraps: the parameters, their names and the state-dict keys are the official ones.

    Args:
        encoder: An official ``segment_anything`` ``ImageEncoderViT``.
        backend: ``auto`` (Triton on CUDA, torch elsewhere), ``triton``, ``torch``, or
            ``official`` (the official blocks' own forward, for comparison).
    """

    def __init__(self, encoder: nn.Module, backend: str = "auto") -> None:
        super().__init__()
        for name in ("patch_embed", "blocks", "neck", "img_size"):
            if not hasattr(encoder, name):
                raise TypeError(f"expected a segment_anything ImageEncoderViT, got {type(encoder).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.img_size = encoder.img_size
        self.patch_embed = encoder.patch_embed
        self.pos_embed = encoder.pos_embed
        self.blocks = encoder.blocks
        self.neck = encoder.neck
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3xSxS normalised, padded images -> Bx256x(S/16)x(S/16) embeddings."""
        backend = self.backend
        if backend == "auto" and x.is_cuda and x.dtype == torch.float32 and not torch.is_autocast_enabled():
            # Plain fp32 on CUDA: the fused kernels run in IEEE fp32 there and measured
            # slower than the official module (H100, ViT-H), so keep the official path.
            backend = "official"
        x = self.patch_embed(x) if backend == "official" else _patch_embed(self.patch_embed, x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        if backend == "official":
            for block in self.blocks:
                x = block(x)
        else:
            x = _blocks_forward(self.blocks, x, backend)
        return self.neck(x.permute(0, 3, 1, 2))


def accelerate_image_encoder(
    encoder: nn.Module, backend: str = "auto", compile: bool = False, compile_mode: str | None = None
) -> FastImageEncoderViT:
    """Wrap an official SAM image encoder in :class:`FastImageEncoderViT`.

    Args:
        encoder: ``segment_anything`` ``ImageEncoderViT`` (e.g. ``sam.image_encoder``); its
            parameters are shared, not copied.
        backend: See :class:`FastImageEncoderViT`.
        compile: Also ``torch.compile`` the forward (in place, so state-dict keys keep their
            names). Off by default: with the fused attention it measured no faster than eager
            for ViT-H on an H100, and the first call compiles for about half a minute.
        compile_mode: ``torch.compile`` mode (``None``: the default mode).

    Returns:
        The fast encoder, computing the same function as ``encoder``.
    """
    if isinstance(encoder, FastImageEncoderViT):
        fast = encoder
        fast.backend = backend
    else:
        fast = FastImageEncoderViT(encoder, backend)
    if compile:
        fast.compile(dynamic=False, mode=compile_mode)
    return fast


def maybe_accelerate_image_encoder(encoder: nn.Module, fast: bool | None = None, compile: bool = False) -> nn.Module:
    """The ``fast`` switch: the accelerated encoder when ``fast`` (default: on CUDA), else as is.

    Args:
        encoder: Official ``ImageEncoderViT``.
        fast: ``True``/``False`` to force; ``None`` for :func:`default_fast`.
        compile: Passed to :func:`accelerate_image_encoder` when accelerating.

    Returns:
        ``encoder`` itself or its :class:`FastImageEncoderViT`.
    """
    if fast is None:
        fast = default_fast()
    return accelerate_image_encoder(encoder, compile=compile) if fast else encoder
