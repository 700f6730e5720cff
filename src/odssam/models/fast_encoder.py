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

``rel_pos_attention`` (:mod:`odssam.models.fast_attention`) has a ``triton`` backend on CUDA
(:mod:`odssam.models.fast_attention_kernels`) and a ``torch`` backend on any device. Both
compute the official function (the official block applies ``proj`` to padded windows and
then crops; projecting only the kept tokens is identical because ``proj`` acts per token). The
patch embedding, a convolution whose stride equals its kernel, runs as one matrix product; it
also leaves the tokens contiguous (the official permuted convolution output makes every later
element-wise op and norm work on strided data).

``benchmarks/bench_sam_encoder.py`` measures it against the official module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import window_partition, window_unpartition
from torch import nn

from odssam.models.fast_attention import exact_attention, rel_pos_attention
from odssam.models.fast_attention_kernels import triton_supported
from odssam.models.fused_norm import add_layer_norm

BACKENDS = ("auto", "triton", "torch", "official", "exact")

FAST_ENCODER_AVAILABLE: bool = triton_supported()
"""True when the fused Triton attention can run here (Triton installed and a CUDA device)."""


def default_fast(device: torch.device | str | None = None) -> bool:
    """Default of the ``fast`` switch: on wherever the fused kernels can run (CUDA)."""
    return triton_supported(device)


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


def _exact_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The official ``Block.forward``, operation for operation, with :func:`exact_attention`
    in place of the block's own attention. x: BxHxWxC."""
    shortcut = x
    x = block.norm1(x)
    if block.window_size > 0:
        height, width = x.shape[1], x.shape[2]
        x, padded_hw = window_partition(x, block.window_size)
    x = exact_attention(block.attn, x)
    if block.window_size > 0:
        x = window_unpartition(x, block.window_size, padded_hw, (height, width))
    x = shortcut + x
    return x + block.mlp(block.norm2(x))


class FastImageEncoderViT(nn.Module):
    """SAM's ViT image encoder with fused relative-position attention.

    Shares ``patch_embed``, ``pos_embed``, ``blocks`` and ``neck`` with the official module it
    wraps: the parameters, their names and the state-dict keys are the official ones.

    Args:
        encoder: An official ``segment_anything`` ``ImageEncoderViT``.
        backend: ``auto`` (Triton on CUDA at reduced precision, ``exact`` on CUDA in fp32,
            torch elsewhere), ``triton``, ``torch``, ``official`` (the official blocks' own
            forward, for comparison) or ``exact`` (the official operations in the official
            order, equal to ``official`` bit for bit, but with the relative-position indices
            built on the device, so a CUDA graph can record it).
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
            # slower than the official module (H100, ViT-H), so keep the official operations,
            # in the form a CUDA graph can record (the official block indexes its tables with
            # indices made on the CPU, a copy that graph capture refuses).
            backend = "exact"
        official_order = backend in ("official", "exact")
        x = self.patch_embed(x) if official_order else _patch_embed(self.patch_embed, x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        if backend == "official":
            for block in self.blocks:
                x = block(x)
        elif backend == "exact":
            for block in self.blocks:
                x = _exact_block_forward(block, x)
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
