"""The two exported graphs and the rewrites that make the model traceable with a dynamic batch.

* :class:`ImageEncoderGraph`: ``image`` Bx3xSxS (the segmenter's preprocessed input) -> one
  output per embedding part of the frozen segmenter (:meth:`FrozenSegmenter.encode
  <odssam.models.segmenter.FrozenSegmenter.encode>`): SAM's single ``image_embedding``
  Bx256x(S/16)x(S/16); SAM 2's prompt grid Bx256x64x64 plus its high-resolution features.
  The heavy, frozen part; run once per image.
* :class:`PromptDecoderGraph`: (``image``, every embedding part) -> ``logits``
  Bx1x(4h)x(4w): the learned prompt encoder on the same input, then the segmenter's mask decoder.
* :class:`WholeModelGraph`: a model without a frozen segmenter (the ``unet`` baseline) is one
  graph, ``image`` -> ``logits``.

:func:`embedding_part_names` names the parts (the graphs' output and input names).

Two parts of the model do not trace into a batch-independent graph as written, so
:func:`export_friendly` swaps them for equivalent forms while exporting:

* ODConv may fold the batch into the convolution's ``groups`` (a constant attribute in
  ONNX): its ``matmul`` form applies each sample's aggregated kernel as a batched matrix
  product over the k*k shifted copies of the input instead.
* The selective scan's Triton kernel cannot be traced: the chunked closed form is used
  (its segment plan is fixed at trace time; the inputs seen at export are ordinary images).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from odssam.models.od_ssm import SS2D
from odssam.models.odconv import ODConv2d

EXPORT_SCAN_BACKEND = "chunked"
PROMPT_GRID_NAME = "image_embedding"


def embedding_part_names(part_count: int) -> list[str]:
    """Graph names of the embedding parts: ``image_embedding`` (the prompt grid), then
    ``image_embedding_1``, ``image_embedding_2`` ... in :meth:`FrozenSegmenter.encode
    <odssam.models.segmenter.FrozenSegmenter.encode>`'s order.

    The first name is the one SAM's single-part exports have always used, so their graphs
    and metadata read as before.
    """
    return [PROMPT_GRID_NAME] + [f"{PROMPT_GRID_NAME}_{index}" for index in range(1, part_count)]


class ImageEncoderGraph(nn.Module):
    """The frozen segmenter's encoder: Bx3xSxS -> its embedding parts (the prompt grid Bx256xhxw first)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.segmenter = model.segmenter

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.segmenter.encode(image))


class PromptDecoderGraph(nn.Module):
    """Learned prompt encoder + the frozen segmenter's mask decoder.

    Inputs: ``image`` Bx3xSxS (the encoder's input) and every embedding part (the encoder's
    outputs, in order; SAM: ``image_embedding`` Bx256x(S/16)x(S/16)). Output: ``logits`` Bx1x(4h)x(4w).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, *embedding: torch.Tensor) -> torch.Tensor:
        return self.model.decode(embedding, self.model.prompt(image))


class WholeModelGraph(nn.Module):
    """A model without a frozen segmenter: ``image`` Bx3xSxS -> ``logits`` Bx1xLxL in one graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


@contextlib.contextmanager
def export_friendly(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` computes the same function in a traceable, batch-generic form.

    Restores every change on exit, even after an error. Only attributes of the modules
    change (each holds its own setting); the config the model was built from is untouched.
    """
    odconv_methods: dict[ODConv2d, str] = {}
    scan_backends: dict[SS2D, str] = {}
    try:
        for module in model.modules():
            if isinstance(module, ODConv2d):
                odconv_methods[module] = module.per_sample
                module.per_sample = "matmul"
            elif isinstance(module, SS2D):
                scan_backends[module] = module.scan_backend
                module.scan_backend = EXPORT_SCAN_BACKEND
        yield model
    finally:
        for module, method in odconv_methods.items():
            module.per_sample = method
        for module, backend in scan_backends.items():
            module.scan_backend = backend
