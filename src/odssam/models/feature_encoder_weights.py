"""Starting weights of the feature encoder (``model.prompt_encoder.feature_encoder.checkpoint``).

Our feature encoder is, parameter for parameter, the image encoder of EfficientViT-SAM
(mit-han-lab/efficientvit, ``efficientvit/models/efficientvit/sam.py``), whose backbone is
also timm's ``efficientvit_l*``. Three sources of weights are read:

* **EfficientViT-SAM, official release layout** (``efficientvit_sam_l1.pt`` ...): a
  ``torch.save`` of ``EfficientViTSam.state_dict()``, possibly nested under ``"state_dict"``
  (the official ``load_state_dict_from_file`` unwraps that key). Its ``image_encoder.*``
  entries cover the whole feature encoder; its SAM ``prompt_encoder.*`` and ``mask_decoder.*``
  entries are ignored. ``auto`` is the published L1 file, verified by its SHA-256.
* **timm** ``efficientvit_l*`` state dicts (``.safetensors``, or ``.pth``/``.bin`` written by
  ``torch.save``, possibly nested under ``"state_dict"`` or ``"model"``): ``stem.*`` and
  ``stages.*`` cover the backbone, ``head.*`` (the ImageNet classifier) is ignored, and the
  neck keeps its random initialisation.

Key mapping, official EfficientViT-SAM -> ours (L1 shown; L0/L2 only change the counts)::

    image_encoder.backbone.stages.0.op_list.0.*           backbone.stem.in_conv.*
    image_encoder.backbone.stages.0.op_list.{k}.*  (k>=1) backbone.stem.res{k-1}.*
    image_encoder.backbone.stages.{s}.op_list.{j}.* (s>=1) backbone.stages.{s-1}.blocks.{j}.*
    image_encoder.neck.input_ops.{i}.op_list.0.conv.weight backbone level 2-i: neck.lateral.{2-i}.0.weight
    image_encoder.neck.input_ops.{i}.op_list.0.norm.*      neck.lateral.{2-i}.1.*
    image_encoder.neck.middle.op_list.{b}.*                neck.blocks.{b}.*
    image_encoder.neck.output_ops.0.op_list.0.conv.*       neck.proj.*
    image_encoder.norm.*                                   neck.norm.*

The official neck lists its inputs coarsest first (``stage4, stage3, stage2``), ours finest
first, hence ``2 - i``. Inside a block both codes use the same names (``main``,
``spatial_conv``, ``point_conv``, ``inverted_conv``, ``depth_conv``, ``context_module``,
``qkv``, ``aggreg``, ``proj``, ``conv``, ``norm``), so the rest of a key is kept. timm -> ours
is ``stem.*`` -> ``backbone.stem.*`` and ``stages.*`` -> ``backbone.stages.*``.

Loading is strict: every parameter and buffer of the covered part must be in the file with
its shape, and nothing else may be, except BatchNorm's ``num_batches_tracked`` counters, which
may be absent (some exports drop them; they do not enter the forward pass).

What else EfficientViT-SAM's weights need (read from its code): bicubic resizing of the
coarser levels (its ``UpSampleLayer`` default, ``align_corners=False``) and epsilon 1e-6 in
every BatchNorm and LayerNorm (its model zoo calls ``set_norm_eps(model, 1e-6)``). These are
config fields (``upsample_mode``, ``norm_eps``) and a mismatch is refused with the values to
set, rather than changed silently: the config is what a trained checkpoint is rebuilt from.
The rest matches by construction: GELU with the tanh approximation, 1x1 conv (no bias) + BN
per level, sum at the stride-8 grid, residual FusedMBConv (expand 1) blocks, 1x1 conv with
bias, LayerNorm2d. One known difference remains: timm's linear attention adds 1e-5 to its
normaliser where the official code adds 1e-15; the normaliser sums over all tokens and is
far larger than either in practice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from odssam.config import FeatureEncoderConfig
from odssam.errors import OdsSamError
from odssam.models.checkpoints import Digest, default_cache_dir, download_checkpoint, is_verified
from odssam.models.weights_io import describe_object, examples, read_weights_file, strict_load_problems

logger = logging.getLogger(__name__)

CONFIG_KEY = "model.prompt_encoder.feature_encoder"
SAM_UPSAMPLE_MODE = "bicubic"
SAM_NORM_EPS = 1e-6
# Wrappers the official loader (``state_dict``) and timm's training scripts (``model``) use.
NESTING_KEYS = ("state_dict", "model")
OPTIONAL_SUFFIX = ".num_batches_tracked"

EFFICIENTVIT_SAM = "efficientvit-sam"
TIMM = "timm"


@dataclass(frozen=True)
class PublishedWeights:
    """A released feature-encoder checkpoint that ``auto`` can fetch.

    Attributes:
        name: Registry name (``odssam weights download NAME``).
        url: Download address.
        file_name: Official file name (the name in the cache).
        digest: Published digest of the file (HuggingFace's Git LFS SHA-256).
        backbone: ``FeatureEncoderConfig.backbone`` it fits.
        neck_blocks: ``FeatureEncoderConfig.neck_blocks`` it fits.
    """

    name: str
    url: str
    file_name: str
    digest: Digest
    backbone: str
    neck_blocks: int


PUBLISHED_WEIGHTS: dict[str, PublishedWeights] = {
    weights.name: weights
    for weights in (
        PublishedWeights(
            name="efficientvit_sam_l1",
            url="https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main/efficientvit_sam_l1.pt",
            file_name="efficientvit_sam_l1.pt",
            digest=Digest("sha256", "fa151df2b9b96896accd505470755cdd293a4c50cdabac95478f3fbd86d9152b"),
            backbone="efficientvit_l1",
            neck_blocks=8,
        ),
    )
}


def published_weights_by_file_name(file_name: str) -> PublishedWeights | None:
    """The published feature-encoder file named ``file_name``, if any."""
    return next((w for w in PUBLISHED_WEIGHTS.values() if w.file_name == file_name), None)


def _where_to_get(weights: PublishedWeights) -> str:
    return (
        f"Download {weights.url} (sha256 {weights.digest.hexdigest}) by other means and set "
        f"{CONFIG_KEY}.checkpoint to its path, or put it in {default_cache_dir()} as {weights.file_name}; "
        f"set {CONFIG_KEY}.checkpoint: null to start from random weights"
    )


# --------------------------------------------------------------------------- resolution


def cached_published_weights(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The verified published file ``name`` in the cache, or ``None``."""
    weights = PUBLISHED_WEIGHTS[name]
    path = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / weights.file_name
    return path if path.is_file() and is_verified(path, weights.digest) else None


def download_published_weights(
    name: str,
    dest_dir: str | Path | None = None,
    url: str | None = None,
    progress: bool = True,
    expected: Digest | None = None,
) -> Path:
    """Download a published file (or a mirror of it) and verify it against its digest (or ``expected``)."""
    weights = PUBLISHED_WEIGHTS[name]
    return download_checkpoint(
        url or weights.url,
        dest_dir,
        expected=expected or weights.digest,
        progress=progress,
        file_name=weights.file_name,
        hint=_where_to_get(weights),
    )


def resolve_feature_encoder_checkpoint(cfg: FeatureEncoderConfig) -> Path | None:
    """Turn ``cfg.checkpoint`` into a file: ``None``, ``"auto"`` (cache, else download) or a path."""
    if cfg.checkpoint is None:
        return None
    if str(cfg.checkpoint) == "auto":
        weights = next((w for w in PUBLISHED_WEIGHTS.values() if w.backbone == cfg.backbone), None)
        if weights is None:
            fits = ", ".join(f"{w.name} ({w.backbone})" for w in PUBLISHED_WEIGHTS.values())
            raise OdsSamError(
                f"{CONFIG_KEY}.checkpoint: auto: no published weights fit backbone '{cfg.backbone}' "
                f"(published: {fits}); set the checkpoint to a file, or to null for random weights"
            )
        return cached_published_weights(weights.name) or download_published_weights(weights.name)
    path = Path(cfg.checkpoint).expanduser()
    if not path.exists():
        raise OdsSamError(f"feature encoder checkpoint not found: {path} (config key {CONFIG_KEY}.checkpoint)")
    if not path.is_file():
        raise OdsSamError(f"feature encoder checkpoint {path} is not a file (config key {CONFIG_KEY}.checkpoint)")
    return path


# --------------------------------------------------------------------------- key mapping

# (official key pattern, our name given the match and the number of neck levels): explicit
# rules, tried in order; the first full match wins.
Rule = tuple[re.Pattern[str], Callable[[re.Match[str], int], str]]
_SAM_RULES: list[Rule] = [
    (re.compile(r"image_encoder\.backbone\.stages\.0\.op_list\.0\.(.+)"), lambda m, n: f"backbone.stem.in_conv.{m[1]}"),
    (
        re.compile(r"image_encoder\.backbone\.stages\.0\.op_list\.(\d+)\.(.+)"),
        lambda m, n: f"backbone.stem.res{int(m[1]) - 1}.{m[2]}",
    ),
    (
        re.compile(r"image_encoder\.backbone\.stages\.(\d+)\.op_list\.(\d+)\.(.+)"),
        lambda m, n: f"backbone.stages.{int(m[1]) - 1}.blocks.{m[2]}.{m[3]}",
    ),
    (
        re.compile(r"image_encoder\.neck\.input_ops\.(\d+)\.op_list\.0\.conv\.weight"),
        lambda m, n: f"neck.lateral.{n - 1 - int(m[1])}.0.weight",
    ),
    (
        re.compile(r"image_encoder\.neck\.input_ops\.(\d+)\.op_list\.0\.norm\.(.+)"),
        lambda m, n: f"neck.lateral.{n - 1 - int(m[1])}.1.{m[2]}",
    ),
    (re.compile(r"image_encoder\.neck\.middle\.op_list\.(\d+)\.(.+)"), lambda m, n: f"neck.blocks.{m[1]}.{m[2]}"),
    (
        re.compile(r"image_encoder\.neck\.output_ops\.0\.op_list\.0\.conv\.(weight|bias)"),
        lambda m, n: f"neck.proj.{m[1]}",
    ),
    (re.compile(r"image_encoder\.norm\.(weight|bias)"), lambda m, n: f"neck.norm.{m[1]}"),
]
_SAM_IGNORED = ("prompt_encoder.", "mask_decoder.")
_TIMM_RULES: list[Rule] = [
    (re.compile(r"(stem\..+)"), lambda m, n: f"backbone.{m[1]}"),
    (re.compile(r"(stages\..+)"), lambda m, n: f"backbone.{m[1]}"),
]
_TIMM_IGNORED = ("head.",)


def _apply(rules: list[Rule], key: str, num_levels: int) -> str | None:
    for pattern, rename in rules:
        match = pattern.fullmatch(key)
        if match:
            return rename(match, num_levels)
    return None


def map_efficientvit_sam_key(key: str, num_levels: int = 3) -> str | None:
    """Our feature-encoder name of an official EfficientViT-SAM key (``None``: no rule matches).

    ``num_levels`` is the number of neck inputs: official input ``i`` (coarsest first) is
    our level ``num_levels - 1 - i`` (finest first).
    """
    return _apply(_SAM_RULES, key, num_levels)


def map_timm_key(key: str) -> str | None:
    """Our feature-encoder name of a timm ``efficientvit_l*`` key (``None``: no rule matches)."""
    return _apply(_TIMM_RULES, key, 0)


# --------------------------------------------------------------------------- reading


@dataclass
class FeatureEncoderWeights:
    """A weights file translated to our names.

    Attributes:
        path: The file.
        layout: ``"efficientvit-sam"`` or ``"timm"``.
        state: Our names -> tensors.
        unmapped: File keys no rule maps (reported as unexpected).
        covers: Prefix of our state dict the file covers (``""`` whole encoder, ``"backbone."``).
    """

    path: Path
    layout: str
    state: dict[str, torch.Tensor]
    unmapped: list[str]
    covers: str


def _unwrap(payload: object, path: Path) -> Mapping[str, object]:
    if isinstance(payload, Mapping) and payload.get("format") == "odssam":
        raise OdsSamError(
            f"{path}: this is an odssam training checkpoint, not feature-encoder weights; "
            "resume or load it as a run checkpoint instead"
        )
    for key in NESTING_KEYS:
        if isinstance(payload, Mapping) and isinstance(payload.get(key), Mapping):
            payload = payload[key]
            break
    if not isinstance(payload, Mapping) or not payload:
        raise OdsSamError(f"{path}: not a feature-encoder state dict: it holds {describe_object(payload)}")
    not_tensors = [key for key, value in payload.items() if not isinstance(key, str) or not torch.is_tensor(value)]
    if not_tensors:
        raise OdsSamError(
            f"{path}: not a plain state dict (names -> tensors): entries {examples([str(k) for k in not_tensors])} "
            "are not tensors"
        )
    return payload


def _layout(state: Mapping[str, torch.Tensor], path: Path) -> str:
    keys = list(state)
    if any(key.startswith("image_encoder.backbone.") for key in keys):
        return EFFICIENTVIT_SAM
    if any(key.startswith("stem.") for key in keys) and any(key.startswith("stages.") for key in keys):
        return TIMM
    if any(key.startswith("image_encoder.patch_embed.") for key in keys):
        raise OdsSamError(
            f"{path}: this is a SAM checkpoint (ViT image encoder), not feature-encoder weights; "
            "pass it as model.sam.checkpoint instead"
        )
    raise OdsSamError(
        f"{path}: neither an EfficientViT-SAM checkpoint (image_encoder.backbone.* keys) nor a timm "
        f"efficientvit state dict (stem.*, stages.* keys); its first keys are {examples(sorted(keys))}"
    )


def read_feature_encoder_weights(path: str | Path, num_levels: int = 3) -> FeatureEncoderWeights:
    """Read a weights file and translate its keys to ours (no model needed).

    Raises:
        OdsSamError: Unreadable file, pickled objects, not a state dict, or a layout that is
            neither EfficientViT-SAM nor timm (a SAM checkpoint is named as such).
    """
    path = Path(path)
    payload = read_weights_file(path, "feature encoder checkpoint")
    state = _unwrap(payload, path)
    layout = _layout(state, path)
    if layout == EFFICIENTVIT_SAM:
        ignored, rename, covers = _SAM_IGNORED, lambda key: map_efficientvit_sam_key(key, num_levels), ""
    else:
        ignored, rename, covers = _TIMM_IGNORED, map_timm_key, "backbone."
    mapped, unmapped = {}, []
    for key, tensor in state.items():
        if key.startswith(ignored):
            continue
        name = rename(key)
        if name is None:
            unmapped.append(key)
        else:
            mapped[name] = tensor
    return FeatureEncoderWeights(path, layout, mapped, unmapped, covers)


def check_config_fits(weights: FeatureEncoderWeights, cfg: FeatureEncoderConfig) -> None:
    """Refuse EfficientViT-SAM weights with a neck config other than the one they were trained with."""
    if weights.layout != EFFICIENTVIT_SAM:
        return
    wrong = []
    if cfg.upsample_mode != SAM_UPSAMPLE_MODE:
        wrong.append(f"{CONFIG_KEY}.upsample_mode: {SAM_UPSAMPLE_MODE} (now {cfg.upsample_mode})")
    if cfg.norm_eps is None or float(cfg.norm_eps) != SAM_NORM_EPS:
        wrong.append(f"{CONFIG_KEY}.norm_eps: 1.0e-6 (now {cfg.norm_eps})")
    if wrong:
        raise OdsSamError(
            f"{weights.path}: EfficientViT-SAM weights were trained with bicubic upsampling in the neck and "
            f"norm epsilon 1e-6; set {' and '.join(wrong)}"
        )


def load_feature_encoder_weights(encoder: nn.Module, weights: FeatureEncoderWeights) -> None:
    """Copy ``weights`` into ``encoder`` (a :class:`~odssam.models.feature_encoder.FeatureEncoder`) strictly.

    Raises:
        OdsSamError: Naming the file and the missing, unexpected or mis-shaped keys.
    """
    expected = {key: value for key, value in encoder.state_dict().items() if key.startswith(weights.covers)}
    # Optional entries (e.g. BatchNorm counters) may be absent; names that could not be mapped count as unexpected.
    shapes = {
        key: tuple(value.shape)
        for key, value in expected.items()
        if key in weights.state or not key.endswith(OPTIONAL_SUFFIX)
    }
    problems = strict_load_problems(shapes, {**dict.fromkeys(weights.unmapped), **weights.state})
    if problems:
        raise OdsSamError(
            f"{weights.path}: {weights.layout} weights do not fit the feature encoder "
            f"({CONFIG_KEY}: backbone, neck_blocks, out_channels): " + "; ".join(problems)
        )
    with torch.no_grad():
        for key, tensor in weights.state.items():
            expected[key].copy_(tensor)


def describe_weights(weights: FeatureEncoderWeights | None) -> str:
    """One line saying where the feature encoder's starting weights come from."""
    if weights is None:
        return "random initialisation"
    if weights.layout == EFFICIENTVIT_SAM:
        return f"EfficientViT-SAM image encoder (backbone and neck) from {weights.path}"
    return f"timm EfficientViT backbone from {weights.path} (neck random)"


def initialise_feature_encoder(encoder: nn.Module, cfg: FeatureEncoderConfig) -> str:
    """Load ``cfg.checkpoint`` into a freshly built feature encoder; return :func:`describe_weights`.

    Args:
        encoder: The :class:`~odssam.models.feature_encoder.FeatureEncoder` built from ``cfg``.
        cfg: Its config; ``cfg.checkpoint`` names the weights (``None``: nothing is loaded).
    """
    path = resolve_feature_encoder_checkpoint(cfg)
    if path is None:
        return describe_weights(None)
    weights = read_feature_encoder_weights(path, num_levels=len(encoder.neck.lateral))
    check_config_fits(weights, cfg)
    load_feature_encoder_weights(encoder, weights)
    return describe_weights(weights)


def check_published_weights_file(path: str | Path, published: PublishedWeights) -> str:
    """Check that a file loads strictly into the feature encoder ``published`` is made for.

    Returns:
        A line saying what it fits. Raises :class:`OdsSamError` otherwise.
    """
    from odssam.models.feature_encoder import FeatureEncoder

    cfg = FeatureEncoderConfig(
        backbone=published.backbone,
        neck_blocks=published.neck_blocks,
        upsample_mode=SAM_UPSAMPLE_MODE,
        norm_eps=SAM_NORM_EPS,
    )
    encoder = FeatureEncoder(cfg)
    weights = read_feature_encoder_weights(path, num_levels=len(encoder.neck.lateral))
    load_feature_encoder_weights(encoder, weights)
    values = sum(tensor.numel() for tensor in weights.state.values())
    return (
        f"{weights.layout} weights fit the feature encoder (backbone {cfg.backbone}, {cfg.neck_blocks} neck blocks; "
        f"{values / 1e6:.2f} M values)"
    )
