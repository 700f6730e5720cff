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

Every field declares its allowed values next to it (:func:`~odssam.config_checks.checked`);
:func:`from_dict`, which every file, override, stored checkpoint config and reproduce cell
goes through, checks them all before any work starts (type rules and limits:
:mod:`odssam.config_checks`). Sizes are bounded by :data:`MAX_IMAGE_SIZE`, DataLoader
workers by :data:`MAX_NUM_WORKERS`: fixed limits, so a config that loads on one machine
loads on every other.

A built config is immutable (frozen dataclasses, list fields as tuples): what was checked
at load is what every part of a run reads. :func:`with_overrides` derives a changed copy,
built and checked by :func:`from_dict` too.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from odssam.config_checks import ValueProblem, check_consistency, check_value, checked, registry, seed_field, show
from odssam.errors import OdsSamError

# Largest square side (SAM input, prompt encoder input, dataset resize): 4x SAM's 1024.
MAX_IMAGE_SIZE = 4096
# DataLoader worker processes: beyond this they only compete for memory and start-up time.
MAX_NUM_WORKERS = 64
SAM_VARIANTS = registry("odssam.models.registry", "SEGMENTER_VARIANTS")
METRIC_CHOICES = registry("odssam.metrics.evaluator", "METRIC_NAMES", extra=("default", "all"))
ConfigT = TypeVar("ConfigT")  # a config dataclass: ExperimentConfig or one of its sections


@dataclass(frozen=True)
class SamConfig:
    """The frozen Segment Anything Model (SAM, or SAM 2 with the ``sam2`` extra installed).

    Attributes:
        variant: Registry name: ``vit_h`` (paper), ``vit_l``, ``vit_b``, or the small
            random-weight test configs ``vit_tiny`` / ``vit_micro``. SAM 2:
            ``sam2_hiera_t``, ``sam2_hiera_s``, ``sam2_hiera_b+``, ``sam2_hiera_l``, their
            SAM 2.1 versions ``sam2.1_hiera_t`` ... ``sam2.1_hiera_l``, and the random-weight
            test configs ``sam2_hiera_micro`` / ``sam2.1_hiera_micro``.
        checkpoint: Path to an official SAM checkpoint (``sam_vit_h_4b8939.pth`` ...),
            ``"auto"`` to use the cache or download it, or ``None`` for random weights.
            SAM 2 takes the official file by path (``sam2_hiera_large.pt`` ...); ``"auto"`` is
            refused for it, since no digest of those files is published.
        image_size: Side of SAM's padded square input (1024 for the official models; a
            multiple of 32 for SAM 2).
        init_seed: Seed of the random initialisation used when there is no checkpoint, so
            a run trained on random SAM weights can be reloaded with the same weights.
        fast_encoder: Use the fused-attention image encoder on CUDA (same weights and
            function as the official module, faster); the official module otherwise. SAM only.
        dynamic_multimask: SAM 2 only. ``false`` (default): the decoder's single-mask token,
            like the SAM path. ``true``: SAM 2's ``dynamic_multimask_via_stability`` (the
            official image predictor's setting), which swaps in the best of the three
            multimask outputs wherever the single mask is unstable: a data-dependent choice.
    """

    variant: str = checked("vit_h", choices=SAM_VARIANTS)
    checkpoint: str | None = checked(None, nonempty=True)  # "" would name the current folder
    image_size: int = checked(1024, at_least=16, at_most=MAX_IMAGE_SIZE, multiple_of=16)
    init_seed: int = seed_field()
    fast_encoder: bool = True
    dynamic_multimask: bool = False


@dataclass(frozen=True)
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

    backbone: str = checked("efficientvit_l1", choices=registry("odssam.models.feature_encoder", "FEATURE_ENCODERS"))
    neck_blocks: int = checked(8, at_least=0, at_most=64)
    out_channels: int = checked(256, at_least=1, at_most=4096)
    upsample_mode: str = checked("bilinear", choices=registry("odssam.models.feature_encoder", "UPSAMPLE_MODES"))
    norm_eps: float | None = checked(None, above=0, at_most=1)
    checkpoint: str | None = checked(None, nonempty=True)


@dataclass(frozen=True)
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
        state_weight_decay: Whether the state parameters ``A_log`` and ``D`` take
            ``train.weight_decay`` like every other weight (``true``, the default: the paper
            names one Adam setting for the whole encoder) or none (``false``: Mamba and
            VMamba's choice).
    """

    num_layers: int = checked(1, at_least=0, at_most=16)
    directions: int = checked(4, choices=registry("odssam.models.od_ssm", "SCAN_DIRECTIONS"))
    d_state: int = checked(16, at_least=1, at_most=256)
    dt_rank: int = checked(16, at_least=1, at_most=1024)
    expand: int = checked(2, at_least=1, at_most=16)
    d_conv: int = checked(3, at_least=1, at_most=15, odd=True)
    dt_min: float = checked(1e-3, above=0, at_most=1)
    dt_max: float = checked(0.1, above=0, at_most=1)
    dt_init_floor: float = checked(1e-4, above=0, at_most=1)
    scan_backend: str = checked("auto", choices=registry("odssam.models.selective_scan", "SCAN_BACKENDS"))
    chunk_size: int = checked(32, at_least=1, at_most=4096)
    scan_checkpoint: bool = True
    state_weight_decay: bool = True


@dataclass(frozen=True)
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

    num_layers: int = checked(2, at_least=0, at_most=8)
    arrangement: str = checked("parallel", choices=registry("odssam.models.ssmodc", "ODCONV_ARRANGEMENTS"))
    kernel_size: int = checked(3, at_least=1, at_most=15, odd=True)
    kernel_num: int = checked(8, at_least=1, at_most=64)
    reduction: float = checked(0.0625, above=0, at_most=1)
    min_channels: int = checked(16, at_least=1, at_most=4096)
    temperature: float = checked(1.0, above=0, at_most=1000)
    per_sample: str = checked("loop", choices=registry("odssam.models.odconv", "PER_SAMPLE_METHODS"))


@dataclass(frozen=True)
class AutoSamConfig:
    """The ``autosam`` baseline's prompt network (:mod:`odssam.models.baselines.autosam`).

    Attributes:
        backbone: ``hardnet85`` (AutoSAM's) or ``hardnet_tiny`` for tests.
        top_channels: Width of the decoder's first up block (stride 32 -> 16). The next two
            keep AutoSAM's widths, those of their skip features (320 and 192 for HarDNet-85).
            1440 makes the network Table 7's 88.6 M parameters; 720 (the skip's width, like
            the other blocks) gives 59.2 M.
    """

    backbone: str = checked("hardnet85", choices=registry("odssam.models.baselines.hardnet", "HARDNET_SPECS"))
    top_channels: int = checked(1440, at_least=1, at_most=8192)


@dataclass(frozen=True)
class PromptEncoderConfig:
    """The learned prompt encoder: feature encoder + SSMODC.

    Attributes:
        name: Registry name of the prompt network (:data:`odssam.models.registry.PROMPT_ENCODERS`):
            ``ods`` (the paper's feature encoder + SSMODC); the baselines' ``noprompt`` and
            ``autosam`` (set by ``model.name``, see :class:`ModelConfig`).
        input_size: Side of the (halved, padded) image fed to the feature encoder.
        use_dwconv: Depthwise-separable conv at the start of SSMODC.
        use_ssm: OD-SSM branch (Table 4 ablation).
        use_odconv: ODConv branch (Table 4 ablation).
        residual: ``P = F + SSMODC(F)`` (paper); ``False`` gives ``P = SSMODC(F)``.
        autosam: The ``autosam`` prompt network (read by that one only).
    """

    input_size: int = checked(512, at_least=8, at_most=MAX_IMAGE_SIZE, multiple_of=8)
    feature_encoder: FeatureEncoderConfig = field(default_factory=FeatureEncoderConfig)
    ssm: SSMConfig = field(default_factory=SSMConfig)
    odconv: ODConvConfig = field(default_factory=ODConvConfig)
    name: str = checked("ods", choices=registry("odssam.models.registry", "PROMPT_ENCODERS"))
    use_dwconv: bool = True
    use_ssm: bool = True
    use_odconv: bool = True
    residual: bool = True
    autosam: AutoSamConfig = field(default_factory=AutoSamConfig)


@dataclass(frozen=True)
class UnetConfig:
    """The ``unet`` baseline: a U-Net without SAM (``segmentation_models_pytorch``, extra ``baselines``).

    Everything trains; images are resized to ``input_size`` and normalised with the ImageNet
    mean and standard deviation (those of the encoder's ImageNet weights, and SAM's).

    Attributes:
        encoder: timm model name of the encoder (smp's ``tu-`` encoders): ``resnet34``
            (default, the usual U-Net polyp baseline), ``efficientnet_b0``, any timm CNN that
            has ``features_only``; ``test_resnet`` is timm's tiny test model.
        weights: Starting weights of the encoder: ``None`` (random), a path to an ImageNet
            state dict of that timm model (``.safetensors``/``.pth``/``.bin``; torchvision's
            ResNet files use the same names; the classifier is ignored), or ``"auto"``, which
            is refused: odssam records no digest of timm's pretrained files and does not
            download weights it cannot verify (the message names the file to fetch).
        input_size: Side ``S`` of the square input and of the logits: 352 (default), the
            polyp protocol of PraNet that U-Net baselines are compared under; a multiple of
            32 (five 2x downsamplings).
        resize: ``stretch`` (default: resized to S x S, as the PraNet protocol) or
            ``longest_side`` (aspect kept, zero-padded, as SAM).
        decoder_width: Channels of the first decoder stage, halved at each of the four next
            (256: smp's default 256, 128, 64, 32, 16).
    """

    encoder: str = checked("resnet34", nonempty=True)
    weights: str | None = None
    input_size: int = checked(352, at_least=32, at_most=MAX_IMAGE_SIZE, multiple_of=32)
    resize: str = checked("stretch", choices=registry("odssam.models.transforms", "RESIZE_MODES"))
    decoder_width: int = checked(256, at_least=16, at_most=4096, multiple_of=16)


@dataclass(frozen=True)
class ModelConfig:
    """The model: ``name`` picks the builder (:data:`odssam.models.registry.MODELS`).

    Attributes:
        name: ``ods_sam`` (the paper's model: a frozen segmenter driven by the learned prompt),
            or a baseline on the same frozen segmenter: ``sam_noprompt`` (one learned dense
            embedding) or ``autosam`` (AutoSAM's HarDNet-85 encoder-decoder). A baseline
            sets ``prompt_encoder.name`` itself (``noprompt`` / ``autosam``). ``unet`` is a
            baseline without SAM (:class:`UnetConfig`).
        sam: The frozen segmenter (SAM or SAM 2).
        prompt_encoder: The learned dense prompt encoder.
        unet: The ``unet`` baseline (read only when ``name`` is ``unet``).
    """

    name: str = checked("ods_sam", choices=registry("odssam.models.registry", "MODELS"))
    sam: SamConfig = field(default_factory=SamConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    unet: UnetConfig = field(default_factory=UnetConfig)


@dataclass(frozen=True)
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

    dataset: str = checked("folder", choices=registry("odssam.data.registry", "DATASET_REGISTRY"))
    root: str = ""
    category: str | None = None
    test_sets: tuple[str, ...] = ()
    val_count: int = checked(0, at_least=0, at_most=1_000_000)
    image_size: int | None = checked(None, at_least=8, at_most=MAX_IMAGE_SIZE)
    include_good: bool = False
    split_seed: int = seed_field()
    test_fraction: float = checked(0.5, at_least=0, at_most=1)
    num_workers: int = checked(2, at_least=0, at_most=MAX_NUM_WORKERS)


@dataclass(frozen=True)
class TrainConfig:
    """The paper's recipe is the default (Section 4: Adam, lr 1e-3, batch 10, 200 epochs).

    Attributes:
        cache_embeddings: Compute SAM image embeddings once and reuse them (disabled
            automatically when ``augment`` is on, since augmentation changes the input).
        cache_dir: Where embeddings are stored (``None``: ``<run>/../.embedding-cache``).
        cache_dtype: ``bfloat16`` or ``float16`` on disk.
        cache_on_device: Hold the cached training items in the training device's memory
            and batch them there, without a DataLoader (same batches; saves each epoch's
            reads). ``None`` (default): on CUDA when they take at most a quarter of its free
            memory; ``true``: wherever the run is; ``false``: never. See
            :mod:`odssam.engine.device_items`.
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
            values, no Python overhead per step), and likewise the frozen encoder of the
            embedding-cache build (same files). Used where it can be: CUDA (DDP included),
            cached embeddings, constant learning rate, no ODConv annealing, no compile;
            elsewhere the step runs eagerly and the log says why. Under DDP an epoch's last
            partial batch is left out, so that every step replays the graph.
        seed: Seed of the prompt encoder's initialisation, the shuffling and augmentation.
        eval_every: With ``data.val_count > 0``: validate (and maybe write ``best.pt``)
            every this many epochs and after the last; unused without validation.
        max_steps: Stop after this many optimizer steps in total (``None``: run all epochs).
        checkpoint_interval_s: Write ``last.pt`` after an epoch when at least this many
            seconds passed since the previous ``last.pt`` write started (or the first epoch
            started); always after the last epoch and when the run is interrupted (SIGINT,
            SIGTERM). ``0``: after every epoch. ``best.pt`` does not wait for it.
        checkpoint_async: Write checkpoints in a background thread (the training thread
            only copies the state to the CPU); ``false``: on the training thread.
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

    epochs: int = checked(200, at_least=1, at_most=1_000_000)
    batch_size: int = checked(10, at_least=1, at_most=4096)
    lr: float = checked(1e-3, above=0, at_most=1)
    weight_decay: float = checked(1e-5, at_least=0, at_most=1)
    lr_schedule: str = checked("constant", choices=registry("odssam.engine.setup", "LR_SCHEDULES"))
    dice_weight: float = checked(0.5, at_least=0, at_most=1000)
    bce_weight: float = checked(0.5, at_least=0, at_most=1000)
    loss_resolution: str = checked("logits", choices=registry("odssam.engine.targets", "LOSS_RESOLUTIONS"))
    full_resolution_loss: bool = False
    cache_embeddings: bool = True
    cache_dir: str | None = None
    cache_dtype: str = checked("bfloat16", choices=registry("odssam.engine.cache", "EMBEDDING_DTYPES"))
    cache_on_device: bool | None = None
    augment: bool = False
    color_jitter: bool = False
    odconv_temperature_anneal: int = checked(0, at_least=0, at_most=1_000_000)
    precision: str = checked("auto", choices=registry("odssam.utils.device", "PRECISIONS"))
    compile: bool = False
    channels_last: bool | None = None
    cuda_graph: bool = True
    seed: int = seed_field()
    eval_every: int = checked(1, at_least=0, at_most=1_000_000)
    max_steps: int | None = checked(None, at_least=1)
    checkpoint_interval_s: float = checked(60.0, at_least=0)
    checkpoint_async: bool = True
    output_dir: str = checked("runs", nonempty=True)
    run_name: str | None = checked(None, nonempty=True)
    metrics: tuple[str, ...] = checked(("default",), choices=METRIC_CHOICES, nonempty=True)
    monitor: str = checked("dice@0.5", nonempty=True)
    final_eval: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: one YAML file under ``configs/``."""

    name: str = checked("experiment", nonempty=True)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------- helpers


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, checking every key and value.

    Unknown keys, values of the wrong type or out of their field's range, and fields that
    contradict each other are all reported at once, in one line.

    Raises:
        OdsSamError: Naming each bad key, its value and what is allowed.
    """
    problems: list[str] = []
    config = _build(cls, data, where, problems)
    if not problems:
        problems = check_consistency(config)
    if problems:
        raise OdsSamError("; ".join(problems))
    return config


def _build(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """``cls`` from ``data``; bad values are appended to ``problems`` and left at their defaults."""
    if data is not None and not isinstance(data, dict):
        problems.append(f"config key '{where.rstrip('.') or '<top>'}' must be a mapping, got {show(data)}")
        data = None
    data = dict(data or {})
    types = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        problems.append(
            f"unknown config key(s) {', '.join(where + str(k) for k in unknown)}; "
            f"valid keys under '{where.rstrip('.') or '<top>'}': {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name in names & set(data):
        value, kind = data[name], types[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{where}{name}.", problems)
            continue
        try:
            kwargs[name] = check_value(cls, name, value, kind)
        except ValueProblem as problem:
            problems.append(f"config key {where}{name}: got {show(value)}; expected {problem.expected}")
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """``config`` as nested plain mappings, list fields as lists: what YAML files and checkpoints hold."""
    return _plain(config)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def with_overrides(config: ConfigT, changes: Mapping[str, Any], where: str = "") -> ConfigT:
    """A changed copy of ``config`` (configs are immutable), checked like a loaded one.

    The copy is rebuilt by :func:`from_dict`, so a derived config passes every check a
    config file does; ``config`` itself is left as it is. Example::

        cfg = with_overrides(cfg, {"data.root": "/data/kvasir", "train.epochs": 1})

    Args:
        config: Any config dataclass (``ExperimentConfig``, a section such as ``ModelConfig``).
        changes: Dotted key (relative to ``config``) -> new value; a value may also be a
            whole section (a config dataclass or a mapping) or a tuple for a list field.
        where: Prefix of the keys in error messages (``"model."`` for a ``ModelConfig``).

    Raises:
        OdsSamError: Naming each bad key, as :func:`from_dict`.
    """
    data = to_dict(config)
    for key, value in changes.items():
        _set_dotted(data, key, _plain(value), f"config key {where}{key}")
    return from_dict(type(config), data, where)


def _set_dotted(data: dict[str, Any], key: str, value: Any, what: str) -> None:
    """``data[a][b][c] = value`` for ``key`` ``a.b.c``, creating missing mappings on the way."""
    node = data
    parts = key.strip().split(".")
    if "" in parts:  # "train..epochs", ".lr", "train.": no key has an empty name
        raise OdsSamError(f"{what}: '{key.strip()}' is not a dotted key (an empty name between dots)")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise OdsSamError(f"{what}: '{part}' is not a mapping")
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML file and apply ``key.sub=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise OdsSamError(f"config file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise OdsSamError(f"{path}: cannot read the config file: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        message = f"{path}: not a UTF-8 text file (byte {error.start}); save the config as UTF-8 YAML"
        raise OdsSamError(message) from error
    data = parse_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise OdsSamError(f"{path}: the top level must be a mapping")
    try:  # an override may meet a section that the file sets to a scalar: name the file too
        apply_overrides(data, overrides or [])
    except OdsSamError as error:
        raise OdsSamError(f"{path}: {error}") from error
    try:
        return from_dict(ExperimentConfig, data)
    except OdsSamError as error:
        raise OdsSamError(f"{path}: {error}") from error


def parse_yaml(text: str, what: str) -> Any:
    """The value of YAML ``text``; ``what`` (a file name, an override) names it in errors.

    Raises:
        OdsSamError: In one line, on malformed YAML and on anchors/aliases that make a
            value contain itself (``&a [*a]``).
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise OdsSamError(f"{what}: not valid YAML: {_yaml_problem(error)}") from error
    except RecursionError as error:
        raise OdsSamError(f"{what}: YAML nested too deeply") from error
    if _contains_itself(value):
        raise OdsSamError(f"{what}: a YAML alias refers to a value that contains it (recursive anchor)")
    return value


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: ``expected ',' or ']' ... (line 1, column 3)``."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


def _contains_itself(value: Any) -> bool:
    """Whether a loaded YAML value has a cycle (aliases may share values; only cycles are refused)."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:  # iterative depth-first walk: deep values must not hit the recursion limit
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            done.add(id(node))
            continue
        if not isinstance(node, (dict, list)) or id(node) in done:
            continue
        if id(node) in on_path:
            return True
        on_path.add(id(node))
        stack.append((node, True))
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        stack.extend((child, False) for child in children)
    return False


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (value parsed as YAML) to a nested mapping in place."""
    for item in overrides:
        if "=" not in item:
            raise OdsSamError(f"override '{item}' is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = parse_yaml(raw, f"override '{item}'") if raw != "" else None
        _set_dotted(data, key, value, f"override '{item}'")
    return data


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
