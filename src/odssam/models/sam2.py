"""The frozen SAM 2 (Hiera image encoder + SAM 2 mask decoder), built from the official ``sam2`` package.

Every variant is the official ``sam2.modeling.sam2_base.SAM2Base`` instantiated from the
package's own Hydra config files (``sam2/configs/sam2*/...yaml``), so all keys of an official
checkpoint load strictly, memory attention and memory encoder included (ODS-SAM runs on
single images and never calls those two). The random-weight test variants
(``sam2_hiera_micro``, ``sam2.1_hiera_micro``) are the tiny configs with a small Hiera: the same
code path at a CPU-friendly size.

:class:`Sam2Segmenter` puts it behind the frozen-segmenter seam
(:mod:`odssam.models.segmenter`), as the official ``SAM2ImagePredictor`` uses it:

    x: Bx3xSxS (stretched to S x S, ImageNet mean/std)
      --image encoder, conv_s0/conv_s1, + no_mem_embed--> embedding parts, in this order:
          image_embed  Bx256x(S/16)x(S/16)   the prompt grid (64x64 at S = 1024)
          high_res_s0  Bx32x(S/4)x(S/4)      conv_s0 of the stride-4 FPN level
          high_res_s1  Bx64x(S/8)x(S/8)      conv_s1 of the stride-8 FPN level
    (parts, dense prompt Bx256x(S/16)x(S/16)) --mask decoder--> logits Bx1x(S/4)x(S/4)

``sam2`` (and its Hydra/iopath dependencies) is imported only inside the functions below, so
odssam imports, and every SAM variant runs, without it. Install it with
``SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0`` (the ``sam2`` extra).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odssam.errors import OdsSamError
from odssam.models.checkpoints import resolve_checkpoint
from odssam.models.segmenter import Embedding, FrozenSegmenter
from odssam.models.shape_only import real_tensors
from odssam.models.transforms import PreprocessSpec
from odssam.models.weights_io import describe_object, examples, read_weights_file, strict_load_problems

# Hiera's stride-32 stage and its first 8x8 windows on the stride-4 grid need S % 32 == 0.
IMAGE_SIZE_MULTIPLE = 32
_OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/"
# Keys only SAM 2.1's layout has (temporal position projection, no-object spatial embedding).
_SAM21_MARKERS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")

# A Hiera small enough for CPU tests: 5 blocks in 4 stages, widths 8..64, one global block (not a
# pooling one: those must be windowed).
_MICRO_OVERRIDES: dict[str, Any] = {
    "model": {
        "image_encoder": {
            "trunk": {
                "embed_dim": 8,
                "num_heads": 1,
                "stages": [1, 1, 2, 1],
                "global_att_blocks": [3],
                "window_spec": [8, 4, 4, 2],
            },
            "neck": {"backbone_channel_list": [64, 32, 16, 8]},
        },
        "memory_attention": {"num_layers": 1, "layer": {"dim_feedforward": 256}},
        "memory_encoder": {"fuser": {"num_layers": 1}},
    }
}


@dataclass(frozen=True)
class Sam2Variant:
    """One SAM 2 variant: an official config file of the ``sam2`` package (plus overrides).

    Attributes:
        config: Path of the Hydra config inside the ``sam2`` package.
        checkpoint_file: Name of the official checkpoint; ``None`` for random-weight test variants.
        release: Folder of the official download address (``072824`` for SAM 2, ``092824`` for 2.1).
        overrides: Nested values merged over the config (test variants only).
    """

    config: str
    checkpoint_file: str | None = None
    release: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str | None:
        """The official download address of the checkpoint, if there is one."""
        return f"{_OFFICIAL_BASE_URL}{self.release}/{self.checkpoint_file}" if self.checkpoint_file else None


def _official(version: str, size: str, file_size: str) -> Sam2Variant:
    release = "072824" if version == "sam2" else "092824"
    return Sam2Variant(f"configs/{version}/{version}_hiera_{size}.yaml", f"{version}_hiera_{file_size}.pt", release)


SAM2_VARIANTS: dict[str, Sam2Variant] = {
    **{
        f"{version}_hiera_{size}": _official(version, size, file_size)
        for version in ("sam2", "sam2.1")
        for size, file_size in (("t", "tiny"), ("s", "small"), ("b+", "base_plus"), ("l", "large"))
    },
    # Random-weight test variants, one per checkpoint layout (SAM 2.1 adds a few memory keys).
    "sam2_hiera_micro": Sam2Variant("configs/sam2/sam2_hiera_t.yaml", overrides=_MICRO_OVERRIDES),
    "sam2.1_hiera_micro": Sam2Variant("configs/sam2.1/sam2.1_hiera_t.yaml", overrides=_MICRO_OVERRIDES),
}


def get_sam2_variant(variant: str) -> Sam2Variant:
    """The registry entry of ``variant``; :class:`OdsSamError` naming the valid ones otherwise."""
    try:
        return SAM2_VARIANTS[variant]
    except KeyError:
        raise OdsSamError(f"unknown SAM 2 variant '{variant}'; choose one of {', '.join(SAM2_VARIANTS)}") from None


def check_sam2_image_size(image_size: int) -> int:
    """Validate SAM 2's square input side (``model.sam.image_size``): a positive multiple of 32."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or image_size <= 0
        or image_size % IMAGE_SIZE_MULTIPLE
    ):
        raise OdsSamError(
            f"model.sam.image_size must be a positive multiple of {IMAGE_SIZE_MULTIPLE} for SAM 2 "
            f"(Hiera's coarsest stage has stride 32), got {image_size!r}"
        )
    return image_size


def _require_sam2():
    try:
        import sam2  # noqa: F401  (initialises the package's Hydra config module)
    except ImportError as error:
        raise OdsSamError(
            f"SAM 2 variants need the 'sam2' package ({error}); install it with "
            "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"
        ) from error


def _variant_config(spec: Sam2Variant):
    """The package's config file of ``spec`` with its overrides merged (``omegaconf.DictConfig``)."""
    _require_sam2()  # first: without sam2, its dependency omegaconf is usually missing too
    from importlib import resources

    from omegaconf import OmegaConf

    text = (resources.files("sam2") / spec.config).read_text(encoding="utf-8")
    return OmegaConf.merge(OmegaConf.create(text), spec.overrides)


def sam2_config(variant: str, image_size: int = 1024, dynamic_multimask: bool = False):
    """The official Hydra config of ``variant`` (an ``omegaconf.DictConfig`` with a ``model`` node).

    Args:
        variant: A :data:`SAM2_VARIANTS` name.
        image_size: Side ``S`` of the square input (``model.image_size``).
        dynamic_multimask: Set the mask decoder's ``dynamic_multimask_via_stability`` (with
            the official 0.05 / 0.98 delta and threshold), as ``build_sam2(...,
            apply_postprocessing=True)`` does.
    """
    base = _variant_config(get_sam2_variant(variant))
    from omegaconf import OmegaConf

    decoder_args = {
        "dynamic_multimask_via_stability": dynamic_multimask,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    }
    settings = {"model": {"image_size": check_sam2_image_size(image_size), "sam_mask_decoder_extra_args": decoder_args}}
    config = OmegaConf.merge(base, settings)
    OmegaConf.resolve(config)
    return config


def build_sam2_model(
    variant: str = "sam2_hiera_l",
    checkpoint: str | Path | None = None,
    image_size: int = 1024,
    dynamic_multimask: bool = False,
) -> nn.Module:
    """Build a frozen official ``SAM2Base``.

    Args:
        variant: A :data:`SAM2_VARIANTS` name.
        checkpoint: ``None`` for random weights, or an official checkpoint file
            (``{"model": state_dict}``, e.g. ``sam2_hiera_large.pt``). Every key of the file
            loads strictly into the full ``SAM2Base``, memory attention and encoder included.
        image_size: Side ``S`` of the square input, a multiple of 32 (the official models: 1024).
        dynamic_multimask: See :func:`sam2_config`.

    Returns:
        The frozen ``SAM2Base`` in eval mode, on the CPU.

    Raises:
        OdsSamError: See :func:`read_sam2_state_dict` and :func:`check_sam2_state_dict`.
    """
    from hydra.utils import instantiate

    config = sam2_config(variant, image_size, dynamic_multimask)
    state = read_sam2_state_dict(checkpoint) if checkpoint is not None else None  # a bad file fails first
    # Randomly initialised even when a checkpoint follows: Hiera's constructor reads tensor
    # values (drop-path rates), so it cannot be built on the meta device as SAM is, nor on
    # shape-only tensors (profiling): it is built with real ones there too.
    with real_tensors():
        model = instantiate(config.model, _recursive_=True)
    if state is not None:
        check_sam2_state_dict(model, state, checkpoint, variant)
        model.load_state_dict(state, strict=True)
    return model.requires_grad_(False).eval()


# --------------------------------------------------------------------------- checkpoints


def read_sam2_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a SAM 2 checkpoint safely (``weights_only=True``): ``{"model": state_dict}`` or a plain state dict.

    Raises:
        OdsSamError: Missing, truncated or corrupt file, pickled objects, or another layout.
    """
    path = Path(path)
    content = read_weights_file(path, "SAM 2 checkpoint")
    state = content.get("model") if isinstance(content, Mapping) and "model" in content else content
    if not isinstance(state, Mapping) or not state:
        raise OdsSamError(f"{path}: not a SAM 2 checkpoint ({{'model': state dict}}): it holds {describe_object(content)}")
    bad = [f"{key} ({describe_object(value)})" for key, value in state.items() if not torch.is_tensor(value)]
    if bad:
        raise OdsSamError(f"{path}: not a SAM 2 checkpoint: entries that are not tensors: {examples(bad)}")
    return dict(state)


def _describe(state: Mapping[str, torch.Tensor]) -> tuple[int, int, bool] | None:
    """(Hiera width, Hiera depth, SAM 2.1 layout) of a state dict, ``None`` without a Hiera."""
    patch = state.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        return None
    depth = len({key.split(".")[3] for key in state if key.startswith("image_encoder.trunk.blocks.")})
    return int(patch.shape[0]), depth, any(marker in state for marker in _SAM21_MARKERS)


def _variant_like(description: tuple[int, int, bool]) -> str | None:
    """The registered variant whose config has this Hiera width, depth and checkpoint layout, if any."""
    import inspect

    from sam2.modeling.backbones.hieradet import Hiera

    defaults = inspect.signature(Hiera).parameters  # configs leave some values at Hiera's defaults
    for name, spec in SAM2_VARIANTS.items():
        model = _variant_config(spec).model
        trunk = model.image_encoder.trunk
        width = trunk.get("embed_dim", defaults["embed_dim"].default)
        depth = sum(trunk.get("stages", defaults["stages"].default))
        if (width, depth, bool(model.get("no_obj_embed_spatial", False))) == description:
            return name
    return None


def check_sam2_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path, variant: str
) -> None:
    """Raise :class:`OdsSamError` unless ``state`` has exactly the keys and shapes of ``model``.

    The message names the variant the file looks like when it is another one, and lists
    missing keys, unexpected keys and shape mismatches. Costs no weights (shapes only).
    """
    differences = strict_load_problems({key: tuple(value.shape) for key, value in model.state_dict().items()}, state)
    if not differences:
        return
    problems = []
    description = _describe(state)
    if description is None:
        problems.append(f"it holds no SAM 2 image encoder (first keys: {examples(sorted(state))})")
    else:
        like = _variant_like(description)
        if like is not None and like != variant:
            problems.append(f"looks like a {like} checkpoint but model.sam.variant is {variant}")
    raise OdsSamError(f"{source}: does not match the SAM 2 model {variant}: " + "; ".join(problems + differences))


def resolve_sam2_checkpoint(variant: str, checkpoint: str | Path | None) -> Path | None:
    """Turn ``model.sam.checkpoint`` into a file path for a SAM 2 variant.

    ``auto`` is refused: Meta publishes no digest of the SAM 2 checkpoints, and odssam does
    not download weights it cannot verify. The message gives the official address.
    """
    if str(checkpoint) != "auto":
        return resolve_checkpoint(variant, checkpoint)
    spec = get_sam2_variant(variant)
    if spec.url is None:
        raise OdsSamError(
            f"no official checkpoint exists for SAM 2 variant '{variant}' (a random-weight test config); "
            "set model.sam.checkpoint to null"
        )
    raise OdsSamError(
        f"model.sam.checkpoint 'auto' is not available for {variant}: no digest of the SAM 2 checkpoints is "
        f"published, so odssam does not download them unverified. Download {spec.url} yourself and set "
        "model.sam.checkpoint to the file (--set model.sam.checkpoint=PATH, or --sam-checkpoint PATH)"
    )


# --------------------------------------------------------------------------- the seam


class Sam2Segmenter(FrozenSegmenter):
    """SAM 2 behind the frozen-segmenter seam: three embedding parts (see the module docstring).

    Args:
        model: An official ``sam2.modeling.sam2_base.SAM2Base`` (frozen here).
        variant: Its registry name.
        weights_source: The checkpoint it was loaded from; ``None`` for random weights.
    """

    def __init__(self, model: nn.Module, variant: str, weights_source: str | None = None):
        super().__init__()
        self.model = model
        self.variant = variant
        self.weights_source = weights_source
        # The official image predictor: stretch to S x S, ImageNet mean/std (= SAM's, on 0..255).
        self.preprocess_spec = PreprocessSpec(int(model.image_size), resize="stretch")
        self.freeze()

    @property
    def image_encoder(self) -> nn.Module:
        """The official Hiera + FPN ``ImageEncoder`` (returns a dict of feature maps)."""
        return self.model.image_encoder

    @property
    def dynamic_multimask(self) -> bool:
        """Whether the decoder swaps in a multimask output when the single mask is unstable."""
        return bool(self.model.sam_mask_decoder.dynamic_multimask_via_stability)

    def embedding_shapes(self) -> tuple[tuple[int, ...], ...]:
        size, channels = self.image_size, self.model.hidden_dim
        return ((channels, size // 16, size // 16), (channels // 8, size // 4, size // 4), (channels // 4, size // 8, size // 8))

    def fingerprinted_modules(self) -> Iterable[nn.Module]:
        """The image encoder, the high-resolution projections and (when added) ``no_mem_embed``."""
        decoder = self.model.sam_mask_decoder
        modules = [self.model.image_encoder, decoder.conv_s0, decoder.conv_s1]
        if self.model.directly_add_no_mem_embed:
            modules.append(nn.ParameterDict({"no_mem_embed": self.model.no_mem_embed}))
        return modules

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Embedding:
        """Bx3xSxS -> (image_embed Bx256x(S/16)x(S/16), high_res_s0 Bx32x(S/4)x(S/4), high_res_s1 Bx64x(S/8)x(S/8)).

        As ``SAM2ImagePredictor.set_image_batch``: ``forward_image`` (encoder, then
        ``conv_s0``/``conv_s1`` on the two finest FPN levels), and ``no_mem_embed`` added to
        the coarsest level when the model was trained so (every official config).
        """
        backbone_out = self.model.forward_image(x)
        _, vision_feats, _, feat_sizes = self.model._prepare_backbone_features(backbone_out)
        if self.model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        # HWxBxC -> BxCxHxW, finest level first.
        maps = [feat.permute(1, 2, 0).reshape(x.shape[0], -1, *size) for feat, size in zip(vision_feats, feat_sizes)]
        return (maps[2], maps[0], maps[1])

    def decode(self, embedding: Embedding, dense_prompt: torch.Tensor) -> torch.Tensor:
        """SAM 2's mask decoder with a dense prompt, no sparse prompt and the high-resolution features.

        The empty sparse prompt has batch B and ``repeat_image=False``: SAM 2's decoder pairs
        prompt i with image i (it does not broadcast a batch-1 prompt as SAM's does), so a
        batch equals a per-image loop. The single-mask token is returned
        (``multimask_output=False``), unless ``model.sam.dynamic_multimask`` lets the decoder
        swap in its best multimask output where the single mask is unstable (the official
        predictor's choice; data-dependent, in training too, since the decoder stays in
        eval mode). The object-score head is not applied, as in ``SAM2ImagePredictor``.

        Args:
            embedding: The three parts of :meth:`encode` (or the embedding cache).
            dense_prompt: Bx256xhxw.

        Returns:
            Mask logits Bx1x(4h)x(4w).
        """
        image_embed, high_res_s0, high_res_s1 = embedding
        dtype = image_embed.dtype
        sparse = image_embed.new_zeros((image_embed.shape[0], 0, dense_prompt.shape[1]))
        logits, _, _, _ = self.model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.model.sam_prompt_encoder.get_dense_pe().to(dtype),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense_prompt.to(dtype),
            multimask_output=False,
            repeat_image=False,
            high_res_features=[high_res_s0.to(dtype), high_res_s1.to(dtype)],
        )
        return logits


def build_sam2_segmenter(cfg, checkpoint: str | Path | None) -> Sam2Segmenter:
    """The :class:`Sam2Segmenter` of a :class:`~odssam.config.SamConfig` (``fast_encoder`` is SAM's only).

    ``checkpoint``: ``None`` (random weights) or a path; it overrides ``cfg.checkpoint``.
    """
    path = resolve_sam2_checkpoint(cfg.variant, checkpoint)
    model = build_sam2_model(cfg.variant, path, cfg.image_size, cfg.dynamic_multimask)
    return Sam2Segmenter(model, cfg.variant, None if path is None else str(path))
