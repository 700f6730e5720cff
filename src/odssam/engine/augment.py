"""Training items decoded from the dataset, optionally augmented (the uncached path).

Augmentation changes the image SAM's encoder sees, so it rules out the embedding cache:
the training step then runs the frozen encoder on every batch. The random draws of each
item depend only on ``(seed, epoch, index)``, so a run is reproducible whatever the
number of DataLoader workers or processes, and a resumed run draws what an
uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from odssam.engine.targets import label_target
from odssam.models.loss import masks_to_targets
from odssam.models.transforms import PreprocessSpec, sam_preprocess


def augment_pair(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, color_jitter: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal/vertical flip, 90-degree rotation and (optionally) colour jitter.

    Args:
        image: HxWx3 uint8.
        mask: HxW bool.
        rng: Source of the random draws.
        color_jitter: Also scale brightness, contrast and saturation by factors in [0.8, 1.2].

    Returns:
        The augmented ``(image, mask)`` (geometric changes applied to both alike).
    """
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    quarter_turns = int(rng.integers(0, 4))
    if quarter_turns:
        image, mask = np.rot90(image, quarter_turns), np.rot90(mask, quarter_turns)
    if color_jitter:
        image = jitter_colors(image, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def jitter_colors(image: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s]."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    pixels = image.astype(np.float32) * brightness
    pixels = (pixels - pixels.mean()) * contrast + pixels.mean()
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    pixels = (pixels - grey[..., None]) * saturation + grey[..., None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


class DecodedTrainingSet(Dataset):
    """Samples turned into SAM inputs and targets, augmented when asked.

    Each item is a dict with ``x`` 3xSxS float32 (SAM's normalised, padded input) and
    ``target`` 1xTxT float32, or for a label-resolution loss the (augmented) mask 1xHxW
    with ``input_size`` and ``label_size``; batch with
    :func:`odssam.engine.targets.collate_training_items`.

    Args:
        dataset: Dataset of :class:`~odssam.data.sample.Sample`.
        image_size: The segmenter's :class:`~odssam.models.transforms.PreprocessSpec` (or the side S of SAM's input).
        target_size: Side T of the targets (the logit size, or S for an input-resolution
            loss); ``None``: the masks themselves (label-resolution loss).
        augment: Apply :func:`augment_pair`.
        color_jitter: Include colour jitter in the augmentation.
        seed: Base seed of the random draws.
    """

    def __init__(
        self,
        dataset: Dataset,
        image_size: int | PreprocessSpec,
        target_size: int | None,
        augment: bool = False,
        color_jitter: bool = False,
        seed: int = 0,
    ):
        self.dataset = dataset
        self.preprocess_spec = image_size if isinstance(image_size, PreprocessSpec) else PreprocessSpec(image_size)
        self.image_size = self.preprocess_spec.image_size
        self.target_size = target_size
        self.augment = augment
        self.color_jitter = color_jitter
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's augmentations (call before iterating; workers get a fresh copy)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.dataset[index]
        image, mask = sample.image, sample.mask
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, mask = augment_pair(image, mask, rng, self.color_jitter)
        x, input_sizes, _ = sam_preprocess([image], self.preprocess_spec)
        if self.target_size is None:
            return {"x": x[0], **label_target(mask, input_sizes[0])}
        target = masks_to_targets([mask], input_sizes, self.image_size, self.target_size)
        return {"x": x[0], "target": target[0]}
