"""The frozen Segment Anything Model, assembled from the official ``segment_anything`` modules.

One builder serves every variant, so the small random-weight test configs run exactly the
code path of ViT-H. The image embedding is ``B x 256 x (S/16) x (S/16)`` for an ``S x S``
input (``B x 256 x 64 x 64`` at the official ``S = 1024``). :class:`SamSegmenter` puts it
behind the frozen-segmenter seam (:mod:`odssam.models.segmenter`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from odssam.errors import OdsSamError
from odssam.models.checkpoints import official_checkpoint_by_file_name, resolve_checkpoint
from odssam.models.segmenter import Embedding, FrozenSegmenter, weights_fingerprint
from odssam.models.transforms import PIXEL_MEAN, PIXEL_STD, PreprocessSpec
from odssam.models.weights_io import describe_object, examples, read_weights_file, strict_load_problems

PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256
WINDOW_SIZE = 14


@dataclass(frozen=True)
class SamSpec:
    """Shape of a SAM image encoder (the prompt encoder and mask decoder are shared by all).

    Attributes:
        encoder_embed_dim: ViT width.
        encoder_depth: Number of ViT blocks.
        encoder_num_heads: Attention heads per block.
        encoder_global_attn_indexes: Blocks with global attention; the rest use 14x14 windows.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]


SAM_REGISTRY: dict[str, SamSpec] = {
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    # Random-weight configs for tests: one windowed and one global block, or a single global one.
    "vit_tiny": SamSpec(96, 2, 2, (1,)),
    "vit_micro": SamSpec(32, 1, 1, (0,)),
}


def list_sam_variants() -> list[str]:
    """Names accepted by :func:`build_sam`."""
    return list(SAM_REGISTRY)


def get_sam_spec(variant: str) -> SamSpec:
    """The registry entry of ``variant``; :class:`OdsSamError` naming the valid ones otherwise."""
    try:
        return SAM_REGISTRY[variant]
    except KeyError:
        raise OdsSamError(
            f"unknown SAM variant '{variant}'; choose one of {', '.join(SAM_REGISTRY)}"
        ) from None


def check_image_size(image_size: int) -> int:
    """Validate SAM's square input side: a positive multiple of the patch size."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % PATCH_SIZE:
        raise OdsSamError(
            f"SAM image_size must be a positive multiple of {PATCH_SIZE} (the ViT patch size), got {image_size!r}"
        )
    return image_size


def _assemble_sam(spec: SamSpec, image_size: int) -> Sam:
    grid = image_size // PATCH_SIZE
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=PATCH_SIZE,
            embed_dim=spec.encoder_embed_dim,
            depth=spec.encoder_depth,
            num_heads=spec.encoder_num_heads,
            mlp_ratio=4,
            out_chans=PROMPT_EMBED_DIM,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=WINDOW_SIZE,
            global_attn_indexes=spec.encoder_global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def freeze_sam(sam: Sam) -> Sam:
    """Switch off gradients of every parameter and put the model in eval mode (in place)."""
    sam.requires_grad_(False)
    sam.eval()
    return sam


def build_sam(variant: str = "vit_h", checkpoint: str | Path | None = None, image_size: int = 1024) -> Sam:
    """Build a frozen SAM.

    Args:
        variant: A :data:`SAM_REGISTRY` name.
        checkpoint: ``None`` for random weights, a state-dict file, or ``"auto"`` for the
            cached (downloaded if needed) official checkpoint.
        image_size: Side ``S`` of the padded square input; a multiple of 16. Official
            checkpoints need 1024 (their position embeddings are 64x64).

    Returns:
        A frozen ``segment_anything.modeling.Sam`` in eval mode, on the CPU. Its image
        encoder maps ``Bx3xSxS`` to ``Bx256x(S/16)x(S/16)``.
    """
    spec = get_sam_spec(variant)
    check_image_size(image_size)
    path = resolve_checkpoint(variant, checkpoint)
    if path is None:
        return freeze_sam(_assemble_sam(spec, image_size))
    # Random initialisation of ViT-H costs seconds and gigabytes only to be overwritten.
    with torch.device("meta"):
        sam = _assemble_sam(spec, image_size)
    return load_sam_checkpoint(sam, path)


# --------------------------------------------------------------------------- checkpoints


def read_sam_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only=True``) and check it is a flat state dict.

    Raises:
        OdsSamError: Missing, truncated or corrupt file; pickled Python objects other
            than tensors; or anything other than a mapping of names to tensors.
    """
    path = Path(path)
    official = official_checkpoint_by_file_name(path.name)
    state = read_weights_file(path, "SAM checkpoint", official.size_bytes if official else None)
    if not isinstance(state, Mapping) or not state:
        raise OdsSamError(f"{path}: not a SAM state dict: it holds {describe_object(state)}")
    not_tensors = [key for key, value in state.items() if not isinstance(key, str) or not torch.is_tensor(value)]
    if not_tensors:
        entries = ", ".join(f"{key} ({describe_object(state[key])})" for key in list(state)[:6])
        raise OdsSamError(
            f"{path}: not a plain state dict (names -> tensors); its top-level entries are {entries}. "
            "If the SAM weights sit under one entry, torch.save that entry alone"
        )
    return dict(state)


def describe_sam_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[SamSpec, int] | None:
    """Recover the encoder shape and image size from a state dict's tensor shapes.

    Returns:
        ``(spec, image_size)``, or ``None`` when the image-encoder keys are absent.
    """
    try:
        embed_dim = state["image_encoder.patch_embed.proj.weight"].shape[0]
        grid = state["image_encoder.pos_embed"].shape[1]
    except (KeyError, IndexError):
        return None
    block_ids = sorted({int(m.group(1)) for key in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", key))})
    global_blocks, head_dim = [], None
    for block in block_ids:
        rel_pos = state.get(f"image_encoder.blocks.{block}.attn.rel_pos_h")
        if rel_pos is None:
            return None
        head_dim = rel_pos.shape[1]
        if rel_pos.shape[0] == 2 * grid - 1 and rel_pos.shape[0] != 2 * WINDOW_SIZE - 1:
            global_blocks.append(block)
    heads = embed_dim // head_dim if head_dim else 0
    return SamSpec(embed_dim, len(block_ids), heads, tuple(global_blocks)), grid * PATCH_SIZE


def find_sam_variant(spec: SamSpec) -> str | None:
    """The registry name whose spec equals ``spec``, if any."""
    return next((name for name, candidate in SAM_REGISTRY.items() if candidate == spec), None)


def _name_of(spec: SamSpec) -> str:
    return find_sam_variant(spec) or (
        f"an unregistered SAM (embed dim {spec.encoder_embed_dim}, depth {spec.encoder_depth})"
    )


def check_sam_state_dict(sam: Sam, state: Mapping[str, torch.Tensor], source: str | Path = "checkpoint") -> None:
    """Raise :class:`OdsSamError` unless ``state`` has exactly the keys and shapes of ``sam``.

    The message names the variant the checkpoint looks like when it differs from the
    model's, and summarises missing keys, unexpected keys and shape mismatches. Works on
    a model built on the ``meta`` device, so it costs no weights.
    """
    expected = {key: tuple(value.shape) for key, value in sam.state_dict().items()}
    differences = strict_load_problems(expected, state)
    if not differences:
        return

    model_description = describe_sam_state_dict(sam.state_dict())
    file_description = describe_sam_state_dict(state)
    problems = []
    if file_description is None:
        problems.append(f"it holds no SAM image encoder (first keys: {examples(sorted(state))})")
        prefix = _common_prefix_hiding_sam_keys(state, set(expected))
        if prefix:
            problems.append(f"its keys carry the prefix '{prefix}': save the state dict without it")
    elif model_description is not None:
        (file_spec, file_size), (model_spec, model_size) = file_description, model_description
        if file_spec != model_spec:
            problems.append(f"looks like a {_name_of(file_spec)} checkpoint but the variant is {_name_of(model_spec)}")
        elif file_size != model_size:
            problems.append(
                f"it was made for image_size {file_size} but the model has image_size {model_size}"
            )
    raise OdsSamError(f"{source}: does not match the SAM model: " + "; ".join(problems + differences))


def _common_prefix_hiding_sam_keys(state: Mapping[str, torch.Tensor], expected: set[str]) -> str | None:
    for key in state:
        for marker in ("image_encoder.", "mask_decoder.", "prompt_encoder."):
            if marker in key:
                prefix = key[: key.index(marker)]
                stripped = {k[len(prefix) :] for k in state if k.startswith(prefix)}
                return prefix if prefix and len(stripped) == len(state) and stripped == expected else None
    return None


def load_sam_checkpoint(sam: Sam, path: str | Path) -> Sam:
    """Load an official-format SAM state dict into ``sam`` with strict key matching.

    A model built on the ``meta`` device takes the file's tensors directly (no copy).

    Args:
        sam: Model from :func:`build_sam` (or the official builder).
        path: A plain state dict with ``image_encoder.*``, ``prompt_encoder.*`` and
            ``mask_decoder.*`` keys, such as ``sam_vit_h_4b8939.pth``.

    Returns:
        ``sam``, frozen.

    Raises:
        OdsSamError: See :func:`read_sam_state_dict` and :func:`check_sam_state_dict`.
    """
    state = read_sam_state_dict(path)
    check_sam_state_dict(sam, state, path)
    on_meta = any(tensor.is_meta for tensor in sam.state_dict().values())
    sam.load_state_dict(state, strict=True, assign=on_meta)
    if on_meta:
        # pixel_mean/pixel_std are non-persistent buffers, never part of a checkpoint.
        sam.pixel_mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32).view(-1, 1, 1)
        sam.pixel_std = torch.tensor(PIXEL_STD, dtype=torch.float32).view(-1, 1, 1)
        leftover = [name for name, tensor in [*sam.named_parameters(), *sam.named_buffers()] if tensor.is_meta]
        if leftover:
            raise RuntimeError(f"tensors left without values after loading {path}: {leftover[:5]}")
        sam.float()
    return freeze_sam(sam)


# --------------------------------------------------------------------------- identity


def sam_weights_fingerprint(sam: Sam) -> str:
    """:func:`~odssam.models.segmenter.weights_fingerprint` of SAM's image encoder (16 hex digits)."""
    return weights_fingerprint(sam.image_encoder)


# --------------------------------------------------------------------------- the seam


class SamSegmenter(FrozenSegmenter):
    """SAM behind the frozen-segmenter seam: one embedding part, Bx256x(S/16)x(S/16).

    Args:
        sam: An official ``segment_anything.modeling.Sam`` (frozen here).
        variant: Its registry name.
        weights_source: The checkpoint it was loaded from; ``None`` for random weights.
        fast_encoder: Replace the image encoder by the fused-attention one (same weights,
            same function; Triton kernels on CUDA).
    """

    def __init__(self, sam: Sam, variant: str, weights_source: str | None = None, fast_encoder: bool = False):
        super().__init__()
        if fast_encoder:
            from odssam.models.fast_encoder import accelerate_image_encoder

            sam.image_encoder = accelerate_image_encoder(sam.image_encoder)
        self.sam = sam
        self.variant = variant
        self.weights_source = weights_source
        self.preprocess_spec = PreprocessSpec(int(sam.image_encoder.img_size))
        self.freeze()

    @property
    def image_encoder(self) -> torch.nn.Module:
        return self.sam.image_encoder

    def embedding_shapes(self) -> tuple[tuple[int, ...], ...]:
        grid = self.image_size // PATCH_SIZE
        return ((PROMPT_EMBED_DIM, grid, grid),)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Embedding:
        """Bx3xSxS -> (Bx256x(S/16)x(S/16),)."""
        return (self.sam.image_encoder(x),)

    def decode(self, embedding: Embedding, dense_prompt: torch.Tensor) -> torch.Tensor:
        """SAM's mask decoder with a dense prompt and no sparse prompt.

        The sparse prompt has batch 1 on purpose: the official decoder repeats the image
        embedding once per sparse prompt, so a batch of B sparse prompts with B images
        would mix images. With batch 1 the call broadcasts and equals a per-image loop.

        Args:
            embedding: ``(Bx256xhxw,)`` from :meth:`encode` (or the embedding cache).
            dense_prompt: Bx256xhxw.

        Returns:
            Mask logits Bx1x(4h)x(4w).
        """
        (image_embeddings,) = embedding
        dense_prompt = dense_prompt.to(image_embeddings.dtype)
        sparse = image_embeddings.new_zeros((1, 0, dense_prompt.shape[1]))
        image_pe = self.sam.prompt_encoder.get_dense_pe().to(image_embeddings.dtype)
        logits, _ = self.sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense_prompt,
            multimask_output=False,
        )
        return logits


def build_sam_segmenter(cfg, checkpoint: str | Path | None) -> SamSegmenter:
    """The :class:`SamSegmenter` of a :class:`~odssam.config.SamConfig`.

    ``checkpoint``: ``None`` (random weights), ``"auto"`` or a path; it overrides ``cfg.checkpoint``.
    """
    path = resolve_checkpoint(cfg.variant, checkpoint)
    sam = build_sam(cfg.variant, checkpoint=path, image_size=cfg.image_size)
    return SamSegmenter(sam, cfg.variant, None if path is None else str(path), fast_encoder=cfg.fast_encoder)
