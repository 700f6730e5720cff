"""Where the training loss is computed: ``train.loss_resolution`` (the paper does not say).

The mask decoder predicts logits on a grid four times coarser than SAM's padded input
(256x256 for 1024). The loss can compare them with the mask at three resolutions:

``logits`` (default)
    The mask resized onto the logit grid (aspect kept, zero padding like the image):
    the loss sees the logits as the decoder outputs them, padding included.
``input``
    Logits upsampled (bilinear) to SAM's padded input (1024x1024), the mask resized
    onto that grid; padding included. ``train.full_resolution_loss: true`` (the older
    switch) means this.
``label``
    Logits mapped onto each label exactly as evaluation maps predictions
    (:func:`odssam.models.transforms.postprocess_logits`: upsampled to the padded
    input, padding cropped, resized to the label's own size, e.g. 512x512 for MoNuSeg
    at ``data.image_size: 512``); the mask is used as it is. Padding is not scored.

With ``label`` the targets of one batch may differ in size (datasets whose images keep
their own size): :func:`collate_training_items` pads them to the largest and records each
item's sizes; :class:`TrainingLoss` then scores each image on its own label (Dice per
image as always; BCE averaged per image, then over the batch, which equals the batch
mean when the sizes agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from odssam.errors import OdsSamError
from odssam.models.transforms import postprocess_logits

LOSS_RESOLUTIONS = ("logits", "input", "label")

Layout = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


def loss_resolution(tcfg) -> str:
    """The effective ``train.loss_resolution``, with the deprecated ``full_resolution_loss`` mapped.

    ``full_resolution_loss: true`` means ``input``; the config checks
    (:func:`odssam.config.from_dict`) refuse it together with ``loss_resolution: label``
    and any value outside :data:`LOSS_RESOLUTIONS`.
    """
    return "input" if tcfg.full_resolution_loss else tcfg.loss_resolution


def target_size(resolution: str, image_size: int, logit_size: int) -> int | None:
    """Side of the square training targets, or ``None`` when targets are the labels themselves."""
    return {"logits": logit_size, "input": image_size, "label": None}[resolution]


def label_target(mask, input_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The training-item fields of a ``label``-resolution target.

    Args:
        mask: HxW bool array or tensor, the label as the dataset returns it.
        input_size: ``(h, w)`` of the image inside SAM's padded input.

    Returns:
        ``target`` 1xHxW float32, ``input_size`` and ``label_size`` as int64 tensors of 2.
    """
    target = torch.as_tensor(mask).float()[None]
    return {
        "target": target,
        "input_size": torch.tensor(input_size, dtype=torch.int64),
        "label_size": torch.tensor(target.shape[-2:], dtype=torch.int64),
    }


def collate_training_items(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack training items; targets of unequal sizes are zero-padded bottom/right to the largest.

    The padding is never scored: items of unequal sizes carry ``label_size``.
    """
    batch = {}
    for key in items[0]:
        tensors = [item[key] for item in items]
        if key == "target" and len({t.shape for t in tensors}) > 1:
            height = max(t.shape[-2] for t in tensors)
            width = max(t.shape[-1] for t in tensors)
            tensors = [F.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2])) for t in tensors]
        batch[key] = torch.stack(tensors)
    return batch


def batch_layout(batch: dict[str, torch.Tensor]) -> Layout | None:
    """Per-image ``(input sizes, label sizes)`` of a ``label``-resolution batch (host values), else ``None``."""
    if "label_size" not in batch:
        return None
    as_pairs = lambda sizes: tuple((int(h), int(w)) for h, w in sizes.tolist())  # noqa: E731
    return as_pairs(batch["input_size"]), as_pairs(batch["label_size"])


class TrainingLoss:
    """The loss at the configured resolution.

    Args:
        loss_fn: ``(logits Bx1xHxW, target Bx1xHxW) -> scalar`` (Dice + BCE).
        resolution: One of :data:`LOSS_RESOLUTIONS`.
        image_size: Side of SAM's padded input.
    """

    def __init__(self, loss_fn, resolution: str, image_size: int):
        self.loss_fn = loss_fn
        self.resolution = resolution
        self.image_size = image_size

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        """Logits Bx1xhxw and targets Bx1xTxT (``label``: Bx1xHmaxxWmax with ``layout``) -> scalar."""
        if self.resolution != "label":
            if logits.shape[-2:] != target.shape[-2:]:
                logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
            return self.loss_fn(logits, target)
        if layout is None:
            raise OdsSamError("the label-resolution loss needs each image's input and label size")
        input_sizes, label_sizes = layout
        maps = postprocess_logits(logits.float(), input_sizes, label_sizes, self.image_size)
        if len(set(label_sizes)) == 1:
            height, width = label_sizes[0]
            return self.loss_fn(torch.stack(maps), target[..., :height, :width])
        losses = [
            self.loss_fn(one[None], target[index : index + 1, :, :height, :width])
            for index, (one, (height, width)) in enumerate(zip(maps, label_sizes))
        ]
        return torch.stack(losses).mean()
