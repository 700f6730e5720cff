"""ONNX export of a trained model: two graphs with a dynamic batch, metadata, parity check.

Output folder::

    image_encoder.onnx      image Bx3xSxS -> the embedding parts (SAM: image_embedding Bx256x(S/16)x(S/16))
    prompt_decoder.onnx     (image, every embedding part) -> logits Bx1x(4h)x(4w)
    odssam_onnx.json        preprocessing, embedding parts, threshold, opset, parity figures

A model without a frozen segmenter (the ``unet`` baseline) has no embedding: it is one graph,
``model.onnx`` (image Bx3xSxS -> logits Bx1xLxL), recorded as the ``decoder`` with
``encoder: null`` and no embedding parts.

The frozen segmenter's embedding may have several parts (SAM: one; SAM 2: the prompt grid
and two high-resolution feature maps); each is one encoder output and one decoder input,
named by :func:`~odssam.export.graphs.embedding_part_names` and listed, with its shape, under
``embedding_parts`` in the metadata. Graphs over 2 GB (ViT-H's encoder) keep their weights
in ``<graph>.onnx.data`` beside them. ``image`` is the segmenter's preprocessed input
(:class:`~odssam.models.transforms.PreprocessSpec`, recorded under ``resize``,
``pixel_mean`` and ``pixel_std``): SAM resizes the longest side to S, normalises and
zero-pads bottom/right to SxS; SAM 2 stretches the image to SxS and normalises.
:mod:`odssam.export.runtime` does this (and the postprocessing) with NumPy and Pillow,
without PyTorch.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odssam import __version__
from odssam.errors import OdsSamError
from odssam.data.synthetic import render_surface
from odssam.export.graphs import (
    EXPORT_SCAN_BACKEND,
    ImageEncoderGraph,
    PromptDecoderGraph,
    WholeModelGraph,
    embedding_part_names,
    export_friendly,
)
from odssam.models.transforms import PreprocessSpec, sam_preprocess
from odssam.utils.atomic import atomic_write_text

ENCODER_FILE = "image_encoder.onnx"
DECODER_FILE = "prompt_decoder.onnx"
MODEL_FILE = "model.onnx"  # the one graph of a model without a frozen segmenter
METADATA_FILE = "odssam_onnx.json"
METADATA_FORMAT = "odssam-onnx"
DEFAULT_OPSET = 17


@dataclass
class ParityReport:
    """onnxruntime (CPU) against PyTorch (fp32) on the same preprocessed images.

    Attributes:
        batch_size: Images in the check (not the export's trace batch, to exercise the dynamic axis).
        max_abs_diff_logits: Encoder + decoder graphs end to end vs the PyTorch model.
        max_abs_diff_embedding: Encoder graph vs the segmenter's encoder, over every part
            (``None`` without a frozen segmenter: one graph, no embedding).
        max_abs_diff_decoder: Decoder graph fed PyTorch's embedding vs the PyTorch model
            (``None`` without a frozen segmenter).
        logit_range: ``(min, max)`` of the PyTorch logits, for scale.
        max_abs_diff_embedding_parts: The encoder's difference per embedding part, by graph name.
    """

    batch_size: int
    max_abs_diff_logits: float
    max_abs_diff_embedding: float | None
    max_abs_diff_decoder: float | None
    logit_range: tuple[float, float]
    max_abs_diff_embedding_parts: dict[str, float] = field(default_factory=dict)


@dataclass
class ExportResult:
    """Paths written by :func:`export_onnx` and its parity check (``None`` if skipped).

    Without a frozen segmenter ``encoder`` is ``None`` and ``decoder`` is the one graph (``model.onnx``).
    """

    encoder: Path | None
    decoder: Path
    metadata: Path
    parity: ParityReport | None = None
    files: list[Path] = field(default_factory=list)


def example_images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Small generated textured images with drawn defects, for tracing and parity checks."""
    rng = np.random.default_rng(seed)
    shapes = [(192, 256), (256, 192), (224, 224)]
    return [render_surface(rng, *shapes[i % len(shapes)])[0] for i in range(count)]


def _check_onnx_available() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise OdsSamError(
            "ONNX export needs the 'onnx' package (and 'onnxruntime' for the parity check): "
            "pip install 'odssam[export]'"
        ) from error


def _trace(
    graph: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], opset: int
) -> None:
    # The exporter restores the wrapper's train/eval flag afterwards, recursively: a new
    # wrapper (training by default) would leave the prompt encoder's BatchNorms training.
    graph.eval()
    dynamic_axes = {name: {0: "batch"} for name in [*inputs, *outputs]}
    with warnings.catch_warnings():
        # Tracer notes about Python values turned into constants (shapes, the scan's
        # segment plan) are expected: only the batch axis is dynamic.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            args,
            str(path),
            dynamo=False,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def _finalise(traced: Path, target_dir: Path) -> list[Path]:
    """Stage a traced graph in ``target_dir`` as one file, or graph + one weight file; check it.

    The exporter writes a graph over 2 GB with one file per weight beside it; those are
    gathered into ``<graph>.onnx.data``. The graph is stamped with the oldest IR version
    that can express its opsets (:func:`loadable_ir_version`).
    """
    import onnx

    destination = target_dir / traced.name
    external = [path for path in traced.parent.iterdir() if path != traced]
    model = onnx.load(str(traced), load_external_data=bool(external))
    model.ir_version = loadable_ir_version(model)
    if external:
        data_name = traced.name + ".data"
        onnx.save_model(
            model, str(destination), save_as_external_data=True, all_tensors_to_one_file=True, location=data_name
        )
        written = [destination, target_dir / data_name]
    else:
        onnx.save_model(model, str(destination))
        written = [destination]
    onnx.checker.check_model(str(destination))
    return written


def loadable_ir_version(model: Any) -> int:
    """The oldest ONNX IR version that can express ``model``'s opsets (8 for opset 17).

    Exporters stamp the IR version of the ``onnx`` package they run with, which may be newer
    than what the installed onnxruntime reads ("Unsupported model IR version: 14, max
    supported IR version: 13"); every onnxruntime that runs the opset reads this one. The
    graphs use no feature of later IR versions (they add data types this model never has).
    """
    import onnx

    return max(3, onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))


def export_onnx(
    model: torch.nn.Module,
    output_dir: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    parity_batch: int = 2,
    threshold: float = 0.5,
    source: str | None = None,
) -> ExportResult:
    """Export a model's two graphs to ONNX, with a dynamic batch axis.

    The model is traced on the CPU in fp32 at batch 1 (generated images); the parity
    check then runs both graphs in onnxruntime at ``parity_batch`` images and compares
    them with the PyTorch model as it normally runs.

    Args:
        model: A :class:`~odssam.models.base.SegmentationModel`: with a frozen segmenter, a
            ``prompt`` stage (:class:`~odssam.models.ods_sam.OdsSam`: two graphs); without
            one, a single graph. It is moved to the CPU.
        output_dir: Folder for the graphs and ``odssam_onnx.json`` (created).
        opset: ONNX opset.
        check: Run the onnxruntime parity check (needs ``onnxruntime``).
        parity_batch: Images in the parity check.
        threshold: Mask threshold recorded in the metadata for runtimes.
        source: Checkpoint the model came from, recorded in the metadata.

    Returns:
        An :class:`ExportResult`.

    Raises:
        OdsSamError: ``onnx``/``onnxruntime`` missing, or an output folder that cannot be written.
    """
    _check_onnx_available()
    if parity_batch < 1:
        raise OdsSamError(f"parity batch must be at least 1, got {parity_batch}")
    model = model.cpu().float().eval()
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OdsSamError(f"{output_dir}: cannot create the output folder ({error.strerror})") from error

    x, _, _ = sam_preprocess(example_images(1), model.preprocess_spec)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=output_dir) as scratch:
        scratch = Path(scratch)
        traced = _trace_graphs(model, x, scratch, opset)
        model.eval()  # belt and braces: tracing must not leave any module training
        (scratch / "final").mkdir()
        staged = [path for graph in traced for path in _finalise(graph, scratch / "final")]
        # Weight files first, graphs last: a graph never points at a missing weight file.
        for path in sorted(staged, key=lambda p: p.suffix == ".onnx"):
            os.replace(path, output_dir / path.name)
            written.append(output_dir / path.name)

    encoder, decoder = _graph_files(model)
    result = ExportResult(
        output_dir / encoder if encoder else None, output_dir / decoder, output_dir / METADATA_FILE
    )
    if check:
        result.parity = check_parity(model, output_dir, batch_size=parity_batch)
    metadata = build_metadata(model, opset=opset, threshold=threshold, source=source, parity=result.parity)
    write_metadata(metadata, result.metadata)
    result.files = written + [result.metadata]
    return result


def _graph_files(model: torch.nn.Module) -> tuple[str | None, str]:
    """``(encoder file, decoder file)``: no encoder and one ``model.onnx`` without a frozen segmenter."""
    return (ENCODER_FILE, DECODER_FILE) if model.segmenter is not None else (None, MODEL_FILE)


def _trace_graphs(model: torch.nn.Module, x: torch.Tensor, scratch: Path, opset: int) -> list[Path]:
    """Trace the model's graphs, each in its own folder of ``scratch`` (one over 2 GB writes weight files beside it)."""
    encoder_file, decoder_file = _graph_files(model)
    decoder_path = scratch / "decoder" / decoder_file
    decoder_path.parent.mkdir()
    with torch.no_grad(), export_friendly(model):
        if encoder_file is None:
            _trace(WholeModelGraph(model), (x,), decoder_path, ["image"], ["logits"], opset)
            return [decoder_path]
        part_names = embedding_part_names(len(model.segmenter.embedding_shapes()))
        embedding = model.encode(x)
        encoder_path = scratch / "encoder" / encoder_file
        encoder_path.parent.mkdir()
        _trace(ImageEncoderGraph(model), (x,), encoder_path, ["image"], part_names, opset)
        _trace(PromptDecoderGraph(model), (x, *embedding), decoder_path, ["image", *part_names], ["logits"], opset)
    return [encoder_path, decoder_path]


PREPROCESSING = {
    "longest_side": (
        "RGB uint8 -> resize the longest side to image_size (bilinear, antialiased), "
        "(x - pixel_mean) / pixel_std, zero-pad bottom/right to image_size x image_size, NCHW float32"
    ),
    "stretch": (
        "RGB uint8 -> resize to image_size x image_size (bilinear, antialiased), "
        "(x - pixel_mean) / pixel_std, NCHW float32"
    ),
}


def build_metadata(
    model: torch.nn.Module, *, opset: int, threshold: float, source: str | None, parity: ParityReport | None
) -> dict[str, Any]:
    """What a runtime needs to feed and read the graphs (see :mod:`odssam.export.runtime`).

    ``embedding_parts`` lists each encoder output (= decoder input) with its per-image shape,
    the prompt grid first; ``resize``, ``pixel_mean`` and ``pixel_std`` are the segmenter's
    :class:`~odssam.models.transforms.PreprocessSpec`.
    """
    spec: PreprocessSpec = model.preprocess_spec
    segmenter = model.segmenter
    shapes = segmenter.embedding_shapes() if segmenter is not None else ()
    encoder, decoder = _graph_files(model)
    return {
        "format": METADATA_FORMAT,
        "version": 1,
        "odssam_version": __version__,
        "opset": opset,
        "encoder": encoder,
        "decoder": decoder,
        "segmenter": segmenter.variant if segmenter is not None else None,
        "image_size": spec.image_size,
        "embedding_size": segmenter.embedding_size if segmenter is not None else None,
        "logit_size": model.logit_size,
        "embedding_parts": [
            {"name": name, "shape": list(shape)} for name, shape in zip(embedding_part_names(len(shapes)), shapes)
        ],
        "prompt_input_size": model.prompt_input_size,
        "resize": spec.resize,
        "pixel_mean": list(spec.pixel_mean),
        "pixel_std": list(spec.pixel_std),
        "threshold": threshold,
        "selective_scan_backend": EXPORT_SCAN_BACKEND,
        "preprocessing": PREPROCESSING[spec.resize],
        "postprocessing": (
            "logits -> bilinear upsample to image_size, crop the resized image's area (all of it after "
            "'stretch'), bilinear resize to the original size, sigmoid; mask = probability > threshold"
        ),
        "source_checkpoint": source,
        "parity": asdict(parity) if parity is not None else None,
    }


def write_metadata(metadata: dict[str, Any], path: Path) -> None:
    """Write the metadata JSON atomically."""
    atomic_write_text(path, json.dumps(metadata, indent=2) + "\n")


def check_parity(model: torch.nn.Module, onnx_dir: str | os.PathLike, batch_size: int = 2, seed: int = 1) -> ParityReport:
    """Compare the exported graphs (onnxruntime, CPU) with the PyTorch model (fp32) on generated images.

    Args:
        model: The exported model, on the CPU.
        onnx_dir: Folder holding the two graphs.
        batch_size: Images compared in one batch.
        seed: Seed of the generated images.

    Returns:
        A :class:`ParityReport` with the maximum absolute differences.
    """
    from odssam.export.runtime import create_session

    onnx_dir = Path(onnx_dir)
    x, _, _ = sam_preprocess(example_images(batch_size, seed), model.preprocess_spec)
    if model.segmenter is None:  # one graph: only the logits to compare
        with torch.no_grad():
            reference = model(x).numpy()
        onnx_logits = create_session(onnx_dir / MODEL_FILE).run(None, {"image": x.numpy()})[0]
        logit_range = (float(reference.min()), float(reference.max()))
        return ParityReport(batch_size, float(np.abs(onnx_logits - reference).max()), None, None, logit_range)
    with torch.no_grad():
        embedding = [part.numpy() for part in model.encode(x)]
        reference = model(x).numpy()
    names = embedding_part_names(len(embedding))
    encoder = create_session(onnx_dir / ENCODER_FILE)
    decoder = create_session(onnx_dir / DECODER_FILE)
    image = x.numpy()
    onnx_embedding = encoder.run(names, {"image": image})
    onnx_logits = decoder.run(None, {"image": image, **dict(zip(names, onnx_embedding))})[0]
    decoder_only = decoder.run(None, {"image": image, **dict(zip(names, embedding))})[0]
    part_diffs = {
        name: float(np.abs(onnx_part - part).max()) for name, onnx_part, part in zip(names, onnx_embedding, embedding)
    }
    return ParityReport(
        batch_size=batch_size,
        max_abs_diff_logits=float(np.abs(onnx_logits - reference).max()),
        max_abs_diff_embedding=max(part_diffs.values()),
        max_abs_diff_decoder=float(np.abs(decoder_only - reference).max()),
        logit_range=(float(reference.min()), float(reference.max())),
        max_abs_diff_embedding_parts=part_diffs,
    )
