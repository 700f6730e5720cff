"""The two exported graphs and the rewrites that make the model traceable with a dynamic batch.

* :class:`ImageEncoderGraph`: ``image`` Bx3xSxS (SAM-preprocessed) -> ``image_embedding``
  Bx256x(S/16)x(S/16). The heavy, frozen part; run once per image.
* :class:`PromptDecoderGraph`: (``image``, ``image_embedding``) -> ``logits``
  Bx1x(S/4)x(S/4): the learned prompt encoder on the same input, then SAM's mask decoder.

Two parts of the model do not trace into a batch-independent graph as written, so
:func:`export_friendly` swaps them for equivalent forms while exporting:

* ODConv folds the batch into the convolution's ``groups`` (a constant attribute in
  ONNX): here each sample's aggregated kernel is applied as a batched matrix product over
  the k*k shifted copies of the input instead.
* The selective scan's Triton kernel cannot be traced: the chunked closed form is used
  (its segment plan is fixed at trace time; the inputs seen at export are ordinary images).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
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


def _shifted_copies(x: torch.Tensor, module: ODConv2d) -> tuple[torch.Tensor, int, int]:
    """im2col with slices only: B x (C*k*k) x (H'*W'), columns ordered like ``weight.flatten``."""
    k, stride, dilation, padding = module.kernel_size, module.stride, module.dilation, module.padding
    height, width = x.shape[-2:]
    out_height = (height + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out_width = (width + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    padded = F.pad(x, (padding, padding, padding, padding))
    copies = []
    for row in range(k):
        for col in range(k):
            top, left = row * dilation, col * dilation
            copies.append(
                padded[
                    :,
                    :,
                    top : top + (out_height - 1) * stride + 1 : stride,
                    left : left + (out_width - 1) * stride + 1 : stride,
                ]
            )
    columns = torch.stack(copies, dim=2)  # B x C x k*k x H' x W'
    return columns.flatten(1, 2).flatten(2), out_height, out_width


def _odconv_forward_batched(self: ODConv2d, x: torch.Tensor) -> torch.Tensor:
    """:meth:`ODConv2d.forward` without batch-dependent convolution groups (same values)."""
    batch, channels = x.shape[0], x.shape[1]
    channel, filter_, spatial, kernel = self.attention(x)
    x = x * channel.view(batch, channels, 1, 1).to(x.dtype)
    weight = self.aggregate_kernels(spatial, kernel).to(x.dtype)
    if kernel is None and spatial is None:  # one kernel for every sample (not merely batch 1)
        out = F.conv2d(x, weight[0], None, self.stride, self.padding, self.dilation, self.groups)
    else:
        columns, out_height, out_width = _shifted_copies(x, self)
        groups = self.groups
        # B x g x (C_in/g * k*k) x L  and  B x g x (C_out/g) x (C_in/g * k*k)
        columns = columns.unflatten(1, (groups, -1))
        kernels = weight.flatten(2).unflatten(1, (groups, -1))
        out = torch.matmul(kernels, columns).flatten(1, 2).unflatten(-1, (out_height, out_width))
    if filter_ is not None:
        out = out * filter_.view(batch, self.out_channels, 1, 1).to(out.dtype)
    return out


@contextlib.contextmanager
def export_friendly(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` computes the same function in a traceable, batch-generic form.

    Restores every change on exit, even after an error.
    """
    patched: list[ODConv2d] = []
    scan_configs: dict[int, tuple[object, str]] = {}
    try:
        for module in model.modules():
            if isinstance(module, ODConv2d):
                module.forward = types.MethodType(_odconv_forward_batched, module)
                patched.append(module)
            elif isinstance(module, SS2D) and id(module.cfg) not in scan_configs:
                scan_configs[id(module.cfg)] = (module.cfg, module.cfg.scan_backend)
                module.cfg.scan_backend = EXPORT_SCAN_BACKEND
        yield model
    finally:
        for module in patched:
            del module.forward
        for cfg, backend in scan_configs.values():
            cfg.scan_backend = backend
