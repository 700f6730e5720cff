"""Configuration dataclasses, mapping 1:1 onto the YAML files under ``configs/``.

A YAML file is a nested mapping whose keys are the dataclass fields below, e.g.::

    model:
      sam: {variant: vit_h, checkpoint: null}
      prompt_encoder:
        ssm: {num_layers: 1, directions: 4}
        odconv: {num_layers: 2, kernel_num: 8}
    train: {epochs: 200, batch_size: 10, lr: 1.0e-3}

Every default is the paper's setting or, where the paper is silent, the documented
default of the reference design; each such open point is a field here so a user can
run the other reading. ``--set key.sub=value`` overrides use the same dotted paths.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from odssam.errors import OdsSamError


@dataclass
class SamConfig:
    """The frozen Segment Anything Model.

    Attributes:
        variant: Registry name: ``vit_h`` (paper), ``vit_l``, ``vit_b``, or the small
            random-weight test configs ``vit_tiny`` / ``vit_micro``.
        checkpoint: Path to an official SAM checkpoint (``sam_vit_h_4b8939.pth`` ...),
            ``"auto"`` to use the cache or download it, or ``None`` for random weights.
        image_size: Side of SAM's padded square input (1024 for the official models).
        init_seed: Seed of the random initialisation used when there is no checkpoint, so
            a run trained on random SAM weights can be reloaded with the same weights.
        fast_encoder: Use the fused-attention image encoder on CUDA (same weights and
            function as the official module, faster); the official module otherwise.
    """

    variant: str = "vit_h"
    checkpoint: str | None = None
    image_size: int = 1024
    init_seed: int = 0
    fast_encoder: bool = True


@dataclass
class FeatureEncoderConfig:
    """EfficientViT feature encoder plus the EfficientViT-SAM style neck.

    Attributes:
        backbone: ``efficientvit_l1`` (default; its last stage has the paper's n = 6
            EfficientViT blocks), ``efficientvit_l0``, ``efficientvit_l2``, or
            ``efficientvit_tiny`` for tests.
        neck_blocks: Residual FusedMBConv blocks in the neck.
        out_channels: Channels of the dense prompt (SAM's prompt embedding dim).
        upsample_mode: How the neck resizes the coarser levels to the output grid:
            ``bilinear`` (reference design) or ``bicubic`` (EfficientViT-SAM's code).
        norm_eps: Epsilon of every BatchNorm and of the output LayerNorm2d. ``None`` keeps
            the building blocks' own (timm backbone BatchNorm 1e-7, neck BatchNorm 1e-5,
            LayerNorm2d 1e-6); EfficientViT-SAM runs all its norms at ``1.0e-6``.
        checkpoint: Starting weights of the feature encoder: ``None`` (random), ``"auto"``
            (the published EfficientViT-SAM-L1 image encoder, ``efficientvit_sam_l1.pt``,
            from the cache or downloaded and SHA-256 verified), a path to an EfficientViT-SAM
            checkpoint in its official release layout (backbone and neck), or a path to a
            timm ``efficientvit_l*`` state dict (``.safetensors``/``.pth``/``.bin``: backbone
            only, the neck stays random). EfficientViT-SAM weights need
            ``upsample_mode: bicubic`` and ``norm_eps: 1.0e-6`` (the functions they were
            trained with); any other setting is refused. Used only when a model is built to
            start training: a trained odssam checkpoint holds the weights itself.
    """

    backbone: str = "efficientvit_l1"
    neck_blocks: int = 8
    out_channels: int = 256
    upsample_mode: str = "bilinear"
    norm_eps: float | None = None
    checkpoint: str | None = None


@dataclass
class SSMConfig:
    """OD-SSM: VMamba-style SS2D blocks with K scan directions.

    Attributes:
        num_layers: Number of OD-SSM blocks (paper Table 6: 1..3; default 1).
        directions: Scan directions K: 4 (rows, columns, both reversed; VMamba) or 8
            (adds both diagonals and their reverses: the "omni-directional" reading).
        d_state: State size N per channel.
        dt_rank: Rank of the delta projection.
        expand: Inner width = expand x 256.
        d_conv: Kernel of the depthwise conv before the scan.
        scan_backend: ``auto`` (Triton on CUDA when available, else chunked),
            ``reference`` (sequential loop), ``chunked`` or ``triton``.
        chunk_size: Time steps per chunk of the chunked closed form.
        scan_checkpoint: Chunked backend: recompute each chunk in the backward pass
            (about 3x less training memory for the scan, about 30% slower).
    """

    num_layers: int = 1
    directions: int = 4
    d_state: int = 16
    dt_rank: int = 16
    expand: int = 2
    d_conv: int = 3
    dt_min: float = 1e-3
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    scan_backend: str = "auto"
    chunk_size: int = 32
    scan_checkpoint: bool = True


@dataclass
class ODConvConfig:
    """Omni-dimensional dynamic convolutions at several dilations.

    Attributes:
        num_layers: ODConv layers, at dilations 1..num_layers (paper Table 5: 1..3; default 2).
        arrangement: How those layers are combined (the paper does not say): ``parallel``
            (default: branches on the same input, summed; "multi-scale" read as one input
            seen at several dilations) or ``stacked`` (one after the other, dilation 1 first).
            Same parameters either way; with one layer the two are the same function.
        kernel_num: Candidate kernels mixed by the kernel attention (8; 4 as a switch).
        reduction: Hidden width of the attention MLP as a fraction of in_channels.
        min_channels: Lower bound on that hidden width.
        temperature: Softmax/sigmoid temperature of the attentions (ODConv anneals it
            from 30 to 1 during the first epochs: see ``TrainConfig.odconv_temperature_anneal``).
        per_sample: How each sample's aggregated kernel is applied: ``loop`` (one convolution
            per sample; fastest in a training step on an H100), ``grouped`` (batch folded into
            the convolution groups) or ``matmul`` (batched matrix product over shifted
            copies). Same values; speed only.
    """

    num_layers: int = 2
    arrangement: str = "parallel"
    kernel_size: int = 3
    kernel_num: int = 8
    reduction: float = 0.0625
    min_channels: int = 16
    temperature: float = 1.0
    per_sample: str = "loop"


@dataclass
class PromptEncoderConfig:
    """The learned prompt encoder: feature encoder + SSMODC.

    Attributes:
        input_size: Side of the (halved, padded) image fed to the feature encoder.
        use_dwconv: Depthwise-separable conv at the start of SSMODC.
        use_ssm: OD-SSM branch (Table 4 ablation).
        use_odconv: ODConv branch (Table 4 ablation).
        residual: ``P = F + SSMODC(F)`` (paper); ``False`` gives ``P = SSMODC(F)``.
    """

    input_size: int = 512
    feature_encoder: FeatureEncoderConfig = field(default_factory=FeatureEncoderConfig)
    ssm: SSMConfig = field(default_factory=SSMConfig)
    odconv: ODConvConfig = field(default_factory=ODConvConfig)
    use_dwconv: bool = True
    use_ssm: bool = True
    use_odconv: bool = True
    residual: bool = True


@dataclass
class ModelConfig:
    sam: SamConfig = field(default_factory=SamConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)


@dataclass
class DataConfig:
    """Which dataset to read and how.

    Attributes:
        dataset: ``kvasir``, ``clinicdb``, ``pranet``, ``monuseg``, ``glas``, ``mvtec``
            or ``folder``.
        root: Dataset folder in its original layout.
        category: MVTec AD category (``bottle`` ...), or the PraNet test set name.
        test_sets: Extra test sets evaluated after training (PraNet: the five polyp sets).
        val_count: Training images held out for validation. 0 (default, the paper's
            protocol: it trains on the whole training set): no validation during training,
            the final model is the last epoch's (``last.pt``), and no test image is opened
            before the final evaluation. N > 0 (opt-in): N training images (a seeded
            choice) are held out, validated every ``train.eval_every`` epochs, and
            ``best.pt`` (the best ``train.monitor`` on them) is the final model.
        image_size: Images are resized to this square size before SAM preprocessing
            (``None`` keeps the original size; MoNuSeg 512, GlaS 224 in the paper).
        include_good: MVTec AD: include defect-free images (empty masks).
        split_seed: Seed of the MVTec AD abnormal-image split.
        test_fraction: MVTec AD: fraction of abnormal images kept for testing.
    """

    dataset: str = "folder"
    root: str = ""
    category: str | None = None
    test_sets: list[str] = field(default_factory=list)
    val_count: int = 0
    image_size: int | None = None
    include_good: bool = False
    split_seed: int = 0
    test_fraction: float = 0.5
    num_workers: int = 2


@dataclass
class TrainConfig:
    """The paper's recipe is the default (Section 4: Adam, lr 1e-3, batch 10, 200 epochs).

    Attributes:
        cache_embeddings: Compute SAM image embeddings once and reuse them (disabled
            automatically when ``augment`` is on, since augmentation changes the input).
        cache_dir: Where embeddings are stored (``None``: ``<run>/../.embedding-cache``).
        cache_dtype: ``bfloat16`` or ``float16`` on disk.
        augment: Random flips, 90-degree rotations and (with ``color_jitter``) colour jitter.
        loss_resolution: Where the loss compares prediction and mask (the paper does not say):
            ``logits`` (default: on the decoder's 256x256 logits, the mask resized onto
            that grid), ``input`` (logits upsampled to SAM's padded 1024x1024 input) or
            ``label`` (logits mapped onto each label as evaluation maps them: padding
            cropped, resized to the label's own size, e.g. 512x512 for MoNuSeg). See
            :mod:`odssam.engine.targets`.
        full_resolution_loss: Deprecated alias kept so older configs and checkpoints load:
            ``true`` means ``loss_resolution: input`` (an error with ``label``).
        lr_schedule: ``constant`` (paper) or ``cosine``.
        odconv_temperature_anneal: Epochs over which the ODConv temperature goes from 30
            to its configured value (0: no annealing, the default).
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        compile: Wrap the prompt encoder in ``torch.compile`` (measured no faster than eager
            with channels-last on an H100, and it compiles for a minute or two first).
        channels_last: Run the prompt encoder in channels-last memory layout (same values;
            ``None``: on CUDA only, where it is faster).
        cuda_graph: Record the training step once as a CUDA graph and replay it (same
            values, no Python overhead per step). Used where it can be: CUDA (DDP included),
            cached embeddings, constant learning rate, no ODConv annealing, no compile;
            elsewhere the step runs eagerly and the log says why. Under DDP an epoch's last
            partial batch is left out, so that every step replays the graph.
        seed: Seed of the prompt encoder's initialisation, the shuffling and augmentation.
        eval_every: With ``data.val_count > 0``: validate (and maybe write ``best.pt``)
            every this many epochs and after the last; unused without validation.
        max_steps: Stop after this many optimizer steps in total (``None``: run all epochs).
        output_dir: Parent folder of run folders.
        run_name: Run folder name under ``output_dir`` (``None``: the experiment name).
        metrics: Metrics computed on validation and test sets (names of
            :mod:`odssam.metrics.evaluator`, ``default`` or ``all``).
        monitor: Validation metric key that selects ``best.pt`` when ``data.val_count > 0``
            (e.g. ``dice@0.5``, ``meanDic``, ``MAE``).
        final_eval: Evaluate the final model (``last.pt``, or ``best.pt`` with validation)
            on the test split(s) after training (turn off when the test images are not
            available).
    """

    epochs: int = 200
    batch_size: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-5
    lr_schedule: str = "constant"
    dice_weight: float = 0.5
    bce_weight: float = 0.5
    loss_resolution: str = "logits"
    full_resolution_loss: bool = False
    cache_embeddings: bool = True
    cache_dir: str | None = None
    cache_dtype: str = "bfloat16"
    augment: bool = False
    color_jitter: bool = False
    odconv_temperature_anneal: int = 0
    precision: str = "auto"
    compile: bool = False
    channels_last: bool | None = None
    cuda_graph: bool = True
    seed: int = 0
    eval_every: int = 1
    max_steps: int | None = None
    output_dir: str = "runs"
    run_name: str | None = None
    metrics: list[str] = field(default_factory=lambda: ["default"])
    monitor: str = "dice@0.5"
    final_eval: bool = True


@dataclass
class ExperimentConfig:
    """A whole experiment: one YAML file under ``configs/``."""

    name: str = "experiment"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------- helpers


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, rejecting unknown keys."""
    data = dict(data or {})
    types = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise OdsSamError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"valid keys under '{where or '<top>'}': {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        kind = types[name]
        if dataclasses.is_dataclass(kind):
            if value is not None and not isinstance(value, dict):
                raise OdsSamError(f"config key '{where}{name}' must be a mapping, got {value!r}")
            kwargs[name] = from_dict(kind, value, f"{where}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML file and apply ``key.sub=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise OdsSamError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise OdsSamError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise OdsSamError(f"{path}: the top level must be a mapping")
    apply_overrides(data, overrides or [])
    try:
        return from_dict(ExperimentConfig, data)
    except OdsSamError as error:
        raise OdsSamError(f"{path}: {error}") from error


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (value parsed as YAML) to a nested mapping in place."""
    for item in overrides:
        if "=" not in item:
            raise OdsSamError(f"override '{item}' is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise OdsSamError(f"override '{item}': '{part}' is not a mapping")
        node[parts[-1]] = value
    return data


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
