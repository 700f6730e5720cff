"""The frozen segmenter's input preprocessing and output postprocessing, done on tensors.

Preprocessing (:class:`PreprocessSpec`) resizes each image into ``S x S`` and normalises it
with the segmenter's pixel statistics. SAM (``resize: longest_side``) scales the longest side
to ``S`` (aspect kept, bilinear with antialias) and zero-pads bottom/right to ``S x S``; the
padding comes *after* normalisation, as in ``Sam.preprocess``, so padded pixels are 0 in
normalised space. SAM 2's image predictor (``resize: stretch``) resizes to ``S x S``
directly; its image then fills the input and nothing is padded. ``segment_anything``'s own ``ResizeLongestSide.apply_image_torch`` is
not used: release 1.0 passes the wrong shape to its resize.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from odssam.errors import OdsSamError

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

RESIZE_MODES = ("longest_side", "stretch")

Size = tuple[int, int]


@dataclass(frozen=True)
class PreprocessSpec:
    """How images become a frozen segmenter's input ``Bx3xSxS``.

    Attributes:
        image_size: Side ``S`` of the square input.
        resize: ``longest_side`` (SAM: aspect kept, zero-padded bottom/right) or ``stretch``
            (SAM 2's image predictor: resized to ``S x S``).
        pixel_mean: Per-channel mean on the 0..255 scale.
        pixel_std: Per-channel standard deviation on the 0..255 scale.
    """

    image_size: int
    resize: str = "longest_side"
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise OdsSamError(f"resize '{self.resize}' is not one of {', '.join(RESIZE_MODES)}")

    def input_size(self, height: int, width: int) -> Size:
        """``(h, w)`` of a ``height x width`` image inside the ``S x S`` input (before padding)."""
        if self.resize == "stretch":
            return self.image_size, self.image_size
        return longest_side_size(height, width, self.image_size)

    def size_problem(self, height: int, width: int) -> str | None:
        """Why a ``height x width`` image cannot be this input, or ``None`` when it can.

        ``longest_side`` rounds the short side of an image more elongated than ``2S:1`` to 0
        pixels, which no resize can produce; ``stretch`` takes any shape.
        """
        if min(self.input_size(height, width)) > 0:
            return None
        ratio = max(height, width) / max(1, min(height, width))
        return (
            f"image is {width}x{height} (WxH, {ratio:.0f}:1): scaling its longest side to the "
            f"model's {self.image_size} px input leaves 0 px for the short side; aspect ratios up to "
            f"{2 * self.image_size}:1 fit (crop the image, or set data.image_size to resize images to squares)"
        )


def _as_spec(spec: PreprocessSpec | int) -> PreprocessSpec:
    return spec if isinstance(spec, PreprocessSpec) else PreprocessSpec(int(spec))


def longest_side_size(height: int, width: int, target: int) -> Size:
    """``(h, w)`` after scaling the longest side of ``height x width`` to ``target`` (rounded as SAM does)."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest_side(images: torch.Tensor, target: int) -> torch.Tensor:
    """Resize ``Bx3xHxW`` images so that the longest side is ``target``, keeping the aspect.

    Args:
        images: ``BxCxHxW`` tensor (uint8 or float, 0..255 scale).
        target: Length of the longest side after resizing.

    Returns:
        ``BxCxhxw`` float32 tensor with ``max(h, w) == target``.
    """
    images = images.float()
    size = longest_side_size(images.shape[-2], images.shape[-1], target)
    if size == tuple(images.shape[-2:]):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def _resize(images: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """``BxCxHxW`` (0..255) -> float32 ``BxCxhxw`` with ``(h, w) = spec.input_size(H, W)``."""
    if spec.resize == "longest_side":
        return resize_longest_side(images, spec.image_size)
    images = images.float()
    size = spec.input_size(images.shape[-2], images.shape[-1])
    if size == tuple(images.shape[-2:]):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def _normalise_and_pad(images: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    mean = torch.tensor(spec.pixel_mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.pixel_std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    normalised = (images - mean) / std
    height, width = images.shape[-2:]
    return F.pad(normalised, (0, spec.image_size - width, 0, spec.image_size - height))


def _array_to_tensor(
    index: int, image: np.ndarray | torch.Tensor, device: torch.device | str | None
) -> torch.Tensor:
    if isinstance(image, torch.Tensor):  # HxWx3 uint8, e.g. in page-locked memory
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != torch.uint8 or min(image.shape[:2]) == 0:
            raise OdsSamError(
                f"image {index}: expected an HxWx3 uint8 RGB tensor, got shape {tuple(image.shape)} dtype {image.dtype}"
            )
        return image.to(device, non_blocking=image.is_pinned()).permute(2, 0, 1)[None]
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        description = (
            f"shape {image.shape} dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        )
        raise OdsSamError(f"image {index}: expected an HxWx3 uint8 RGB array, got {description}")
    if min(image.shape[:2]) == 0:
        raise OdsSamError(f"image {index}: empty image of shape {image.shape}")
    if not (image.flags.writeable and image.flags.c_contiguous):
        image = np.array(image, order="C")  # torch.from_numpy needs a writable, contiguous array
    return torch.from_numpy(image).to(device).permute(2, 0, 1)[None]


def sam_preprocess(
    images: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
    image_size: int | PreprocessSpec = 1024,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, list[Size], list[Size]]:
    """Turn RGB images into the frozen segmenter's normalised (padded) input.

    Args:
        images: A list of ``HxWx3`` uint8 arrays or tensors (sizes may differ), one such
            array, or a ``Bx3xHxW`` tensor, uint8 or float on the 0..255 scale.
        image_size: A :class:`PreprocessSpec`, or the side ``S`` of SAM's square input
            (SAM's preprocessing at that size).
        device: Where to compute (default: the tensor's device, or the CPU for arrays).

    Returns:
        ``x``: ``Bx3xSxS`` float32, normalised, zero-padded bottom/right.
        ``input_sizes``: ``(h, w)`` of each image after resizing, before padding.
        ``original_sizes``: ``(H, W)`` of each input image.

    Raises:
        OdsSamError: For an input that is not an RGB image, or an image too elongated for
            the input (:meth:`PreprocessSpec.size_problem`).
    """
    spec = _as_spec(image_size)
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3 or min(images.shape[-2:]) == 0:
            raise OdsSamError(f"expected a Bx3xHxW image tensor, got shape {tuple(images.shape)}")
        if images.is_complex() or images.dtype == torch.bool:
            raise OdsSamError(f"expected a uint8 or float image tensor, got {images.dtype}")
        problem = spec.size_problem(*images.shape[-2:])
        if problem is not None:
            raise OdsSamError(f"images: {problem}")
        images = images.to(device) if device is not None else images
        resized = _resize(images, spec)
        original = (int(images.shape[-2]), int(images.shape[-1]))
        count = images.shape[0]
        return (
            _normalise_and_pad(resized, spec),
            [tuple(resized.shape[-2:])] * count,
            [original] * count,
        )

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if len(images) == 0:
        raise OdsSamError("no images to preprocess")
    padded, input_sizes, original_sizes = [], [], []
    for index, image in enumerate(images):
        tensor = _array_to_tensor(index, image, device)
        problem = spec.size_problem(*tensor.shape[-2:])
        if problem is not None:
            raise OdsSamError(f"image {index}: {problem}")
        resized = _resize(tensor, spec)
        padded.append(_normalise_and_pad(resized, spec))
        input_sizes.append(tuple(resized.shape[-2:]))
        original_sizes.append(tuple(image.shape[:2]))
    return torch.cat(padded), input_sizes, original_sizes


def postprocess_logits(
    logits: torch.Tensor,
    input_sizes: Sequence[Size],
    original_sizes: Sequence[Size],
    image_size: int = 1024,
) -> list[torch.Tensor]:
    """Map low-resolution mask logits back onto the original images.

    Args:
        logits: ``BxCxhxw`` decoder logits (``Bx1x256x256`` for ``S = 1024``).
        input_sizes: ``(h, w)`` of each image inside the padded input.
        original_sizes: ``(H, W)`` of each original image.
        image_size: Side ``S`` of SAM's square input.

    Returns:
        One ``CxHxW`` logit map per image: upsampled to ``SxS`` (bilinear), cropped to the
        input size, resized to the original size.
    """
    if logits.ndim != 4:
        raise OdsSamError(f"expected BxCxhxw logits, got shape {tuple(logits.shape)}")
    if not len(input_sizes) == len(original_sizes) == logits.shape[0]:
        raise OdsSamError(
            f"{logits.shape[0]} logit maps but {len(input_sizes)} input sizes and {len(original_sizes)} original sizes"
        )
    upsampled = F.interpolate(logits, size=(image_size, image_size), mode="bilinear", align_corners=False)
    outputs = []
    for index, ((height, width), original) in enumerate(zip(input_sizes, original_sizes)):
        cropped = upsampled[index : index + 1, :, :height, :width]
        if (height, width) != tuple(original):
            cropped = F.interpolate(cropped, size=tuple(original), mode="bilinear", align_corners=False)
        outputs.append(cropped[0])
    return outputs
