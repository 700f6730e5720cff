"""The two exported graphs and the rewrites that make the model traceable with a dynamic batch.

* :class:`ImageEncoderGraph`: ``image`` Bx3xSxS (SAM-preprocessed) -> ``image_embedding``
  Bx256x(S/16)x(S/16). The heavy, frozen part; run once per image.
* :class:`PromptDecoderGraph`: (``image``, ``image_embedding``) -> ``logits``
  Bx1x(S/4)x(S/4): the learned prompt encoder on the same input, then SAM's mask decoder.

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


class ImageEncoderGraph(nn.Module):
    """SAM's frozen image encoder: Bx3xSxS -> Bx256x(S/16)x(S/16)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.image_encoder = model.sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class PromptDecoderGraph(nn.Module):
    """Learned prompt encoder + SAM's mask decoder.

    Inputs: ``image`` Bx3xSxS (the encoder's input) and ``image_embedding``
    Bx256x(S/16)x(S/16) (the encoder's output). Output: ``logits`` Bx1x(S/4)x(S/4).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, image_embedding: torch.Tensor) -> torch.Tensor:
        return self.model.decode(image_embedding, self.model.prompt(image))


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
