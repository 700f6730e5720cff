"""The ``unet`` baseline: a U-Net without SAM (``model.name: unet``; config :class:`~odssam.config.UnetConfig`).

``segmentation_models_pytorch``'s ``Unet`` on a timm encoder (smp's ``tu-<name>``
encoders, the timm model built with ``features_only``)::

    image (uint8, any size) --preprocess--> x: Bx3xSxS (stretched to S = 352, ImageNet-normalised)
    x --timm encoder--> features at strides 2..32 --U-Net decoder--> logits Bx1xSxS

There is no frozen segmenter (``segmenter`` is ``None``): nothing to cache, every weight
trains and goes into checkpoints. The logits are at full input resolution, so the engine's
``logits`` loss resolution compares them with the mask resized to S x S.

The encoder's starting weights (``model.unet.weights``) are an ImageNet state dict of the
timm model, loaded strictly: every encoder tensor must be in the file with its shape; the
file may also hold the classifier's tensors (ignored) and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from odssam.errors import OdsSamError
from odssam.models.base import SegmentationModel
from odssam.models.transforms import PreprocessSpec
from odssam.models.weights_io import examples, read_weights_file, strict_load_problems

CONFIG_KEY = "model.unet"
DECODER_STAGES = 5  # smp's Unet: one decoder stage per encoder downsampling (strides 32 .. 2)
OPTIONAL_SUFFIX = ".num_batches_tracked"  # BatchNorm counters; some exports drop them
NESTING_KEYS = ("state_dict", "model")  # wrappers of timm's training scripts and of other trainers


class UnetBaseline(SegmentationModel):
    """A U-Net on preprocessed images: Bx3xSxS -> logits Bx1xSxS; every parameter trains.

    Args:
        network: ``segmentation_models_pytorch.Unet`` with one output class.
        preprocess_spec: How images become its input (side ``S``, resize mode, ImageNet statistics).
        weights_description: Where the encoder's starting weights came from (printed by ``train``).
    """

    def __init__(self, network: nn.Module, preprocess_spec: PreprocessSpec, weights_description: str):
        super().__init__()
        self.network = network
        self.preprocess_spec = preprocess_spec
        self.prompt_input_size = preprocess_spec.image_size  # the network reads the input as it is
        # Read by the trainer from the trainable module (as DensePromptEncoder.weights_description).
        self.network.weights_description = weights_description

    @property
    def trainable(self) -> nn.Module:
        return self.network

    @property
    def logit_size(self) -> int:
        """The logits are at the input's resolution."""
        return self.image_size

    def set_channels_last(self, enabled: bool = True) -> UnetBaseline:
        self.network.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        return self

    def forward(self, x: torch.Tensor, image_embeddings=None) -> torch.Tensor:
        """Preprocessed images Bx3xSxS -> logits Bx1xSxS (``image_embeddings``: always empty, nothing is frozen)."""
        if image_embeddings:
            raise OdsSamError("the unet baseline has no frozen segmenter and takes no cached embedding")
        return self.network(x)


def _import_smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError as error:
        raise OdsSamError(
            "model.name: unet needs segmentation-models-pytorch: pip install 'odssam[baselines]'"
        ) from error
    return smp


def _check_encoder_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        raise OdsSamError(
            f"config key {CONFIG_KEY}.encoder: '{name}' is not a timm model name (e.g. resnet34, efficientnet_b0)"
        )


def decoder_channels(width: int) -> tuple[int, ...]:
    """``model.unet.decoder_width`` -> the channels of the five decoder stages, halved at each (min 1)."""
    return tuple(max(1, width >> stage) for stage in range(DECODER_STAGES))


def build_unet_network(encoder: str, decoder_width: int = 256) -> nn.Module:
    """``smp.Unet`` on the timm model ``encoder`` (random weights), one output class, logits out."""
    smp = _import_smp()
    _check_encoder_name(encoder)
    return smp.Unet(
        encoder_name=f"tu-{encoder}",
        encoder_weights=None,
        decoder_channels=decoder_channels(decoder_width),
        classes=1,
        activation=None,
    )


# --------------------------------------------------------------------------- encoder weights


def resolve_encoder_weights(encoder: str, weights: str | None) -> Path | None:
    """``model.unet.weights`` as a file: ``None``, a path, or ``auto`` refused (no digest to verify it)."""
    if weights is None:
        return None
    if str(weights) == "auto":
        import timm

        hub_id = timm.models.get_pretrained_cfg(encoder).hf_hub_id if timm.is_model(encoder) else None
        where = (
            f"Download https://huggingface.co/{hub_id}/resolve/main/model.safetensors yourself and set "
            f"{CONFIG_KEY}.weights to the file"
            if hub_id
            else f"timm names no pretrained file for '{encoder}'; set {CONFIG_KEY}.weights to an ImageNet state dict"
        )
        raise OdsSamError(
            f"config key {CONFIG_KEY}.weights: 'auto' is not available: odssam records no digest of timm's "
            f"pretrained files, so it does not download them unverified. {where}, or to null for random weights"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        problem = "not found" if not path.exists() else "not a file"
        raise OdsSamError(f"U-Net encoder weights {path}: {problem} (config key {CONFIG_KEY}.weights)")
    return path


def _state_dict_of(payload: object, path: Path) -> dict[str, torch.Tensor]:
    """The names -> tensors mapping a weights file holds (unwrapped from ``state_dict``/``model``)."""
    if isinstance(payload, dict) and payload.get("format") == "odssam":
        raise OdsSamError(f"{path}: an odssam training checkpoint, not encoder weights ({CONFIG_KEY}.weights)")
    for key in NESTING_KEYS:
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not payload or not all(torch.is_tensor(v) for v in payload.values()):
        raise OdsSamError(f"{path}: not a state dict of tensors ({CONFIG_KEY}.weights)")
    return {str(key): value for key, value in payload.items()}


def classifier_keys(encoder: str, features: nn.Module) -> set[str]:
    """Tensors of the full timm model that its ``features_only`` encoder lacks (the ImageNet head)."""
    import timm

    with torch.device("meta"):  # names only: nothing is allocated
        full = timm.create_model(encoder)
    return set(full.state_dict()) - set(features.state_dict())


def load_encoder_weights(network: nn.Module, encoder: str, path: Path) -> str:
    """Copy an ImageNet state dict of timm model ``encoder`` into ``network.encoder`` strictly.

    Returns:
        A line saying where the starting weights came from.

    Raises:
        OdsSamError: Naming the file and its missing, unexpected or mis-shaped tensors.
    """
    features = network.encoder.model  # the timm FeatureListNet: the full model's names, head left out
    state = _state_dict_of(read_weights_file(path, f"U-Net encoder weights ({CONFIG_KEY}.weights)"), path)
    head = classifier_keys(encoder, features)
    state = {key: value for key, value in state.items() if key not in head}
    expected = features.state_dict()
    shapes = {k: tuple(v.shape) for k, v in expected.items() if k in state or not k.endswith(OPTIONAL_SUFFIX)}
    problems = strict_load_problems(shapes, state)
    if problems:
        raise OdsSamError(
            f"{path}: does not fit the timm encoder '{encoder}' ({CONFIG_KEY}.encoder; its first tensors are "
            f"{examples(sorted(expected))}): " + "; ".join(problems)
        )
    with torch.no_grad():
        for key, tensor in state.items():
            expected[key].copy_(tensor)
    return f"timm {encoder} ImageNet weights from {path} (decoder random)"


# --------------------------------------------------------------------------- builder


def build_unet(cfg=None, checkpoint: str | None = None, *, feature_encoder_weights: bool = True) -> UnetBaseline:
    """Build the ``unet`` baseline from a :class:`~odssam.config.ModelConfig` (its ``unet`` section).

    Args:
        cfg: Model configuration.
        checkpoint: SAM's checkpoint override of :func:`~odssam.models.registry.build_model`;
            unused (there is no SAM).
        feature_encoder_weights: Load the encoder's starting weights (``model.unet.weights``).
            ``False`` when the weights will come from a trained odssam checkpoint.
    """
    from odssam.config import ModelConfig

    ucfg = (cfg or ModelConfig()).unet
    network = build_unet_network(ucfg.encoder, ucfg.decoder_width)
    path = resolve_encoder_weights(ucfg.encoder, ucfg.weights) if feature_encoder_weights else None
    description = load_encoder_weights(network, ucfg.encoder, path) if path is not None else "random initialisation"
    return UnetBaseline(network, PreprocessSpec(ucfg.input_size, ucfg.resize), description)
