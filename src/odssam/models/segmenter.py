"""The seam around the frozen segmenter: what ODS-SAM needs of SAM, SAM 2 or any successor.

A frozen promptable segmenter has three parts that matter here (paper Figure 1):

    x: Bx3xSxS (preprocessed) --image encoder--> embedding: tuple of tensors, the first
                                                  Bx256xhxw (the prompt grid, 64x64 at S = 1024)
    (embedding, dense prompt Bx256xhxw) --mask decoder--> logits Bx1x(4h)x(4w)

The embedding is a tuple because some decoders take more than the image embedding (SAM 2
feeds high-resolution encoder features to its decoder); the engine caches and moves every
part, so a new segmenter adds one file and one registry entry
(:data:`odssam.models.registry.SEGMENTER_VARIANTS`), nothing in the trainer, evaluator or
predictor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
from torch import nn

from odssam.models.transforms import PreprocessSpec

__all__ = ["Embedding", "FrozenSegmenter", "PreprocessSpec", "weights_fingerprint"]

Embedding = tuple[torch.Tensor, ...]
FINGERPRINT_SAMPLES_PER_TENSOR = 1024


class FrozenSegmenter(nn.Module):
    """A frozen image encoder + mask decoder that takes a dense prompt.

    Subclasses set :attr:`preprocess_spec`, :attr:`variant` and :attr:`weights_source`,
    hold their official modules, and implement :meth:`encode`, :meth:`decode`,
    :meth:`embedding_shapes` and :attr:`image_encoder`. Every parameter is frozen and the
    module stays in eval mode whatever ``train()`` is called with.

    Attributes:
        variant: Registry name (``vit_h``, ``sam2_hiera_l`` ...).
        preprocess_spec: How images become the input (:class:`~odssam.models.transforms.PreprocessSpec`).
        weights_source: Where the weights came from (a path), ``None`` for random weights.
        prompt_channels: Channels of the dense prompt the decoder takes.
    """

    variant: str = ""
    preprocess_spec: PreprocessSpec
    weights_source: str | None = None
    prompt_channels: int = 256

    def freeze(self) -> FrozenSegmenter:
        """Switch off every gradient and enter eval mode (in place)."""
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FrozenSegmenter:
        """Frozen: always eval mode, so dropout or norm statistics never change."""
        return super().train(False)

    @property
    def image_size(self) -> int:
        """Side ``S`` of the square input."""
        return self.preprocess_spec.image_size

    @property
    def embedding_size(self) -> int:
        """Side of the prompt grid ``h`` (64 for the official models)."""
        return self.embedding_shapes()[0][-1]

    @property
    def logit_size(self) -> int:
        """Side of the decoder's low-resolution logits (256 for the official models)."""
        return 4 * self.embedding_size

    @property
    def image_encoder(self) -> nn.Module:
        """The heavy encoder module (benchmarks and export time it on its own)."""
        raise NotImplementedError

    def embedding_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-image shape of every part of :meth:`encode`'s output, the prompt grid first."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> Embedding:
        """Bx3xSxS -> the embedding parts (see :meth:`embedding_shapes`), without gradients."""
        raise NotImplementedError

    def decode(self, embedding: Embedding, dense_prompt: torch.Tensor) -> torch.Tensor:
        """Embedding parts + dense prompt Bx256xhxw -> mask logits Bx1x(4h)x(4w)."""
        raise NotImplementedError

    def fingerprinted_modules(self) -> Iterable[nn.Module]:
        """The modules whose weights decide :meth:`encode`'s output."""
        return (self.image_encoder,)

    def weights_fingerprint(self) -> str:
        """A cheap, deterministic identity of the encoder weights, for embedding caches.

        Hashes every tensor's name, dtype and shape plus up to 1024 evenly strided values,
        so it reads a few megabytes even for ViT-H. Returns 16 hex digits.
        """
        return weights_fingerprint(*self.fingerprinted_modules())


def weights_fingerprint(*modules: nn.Module) -> str:
    """The fingerprint of :meth:`FrozenSegmenter.weights_fingerprint` over ``modules``' state dicts."""
    hasher = hashlib.sha256()
    for index, module in enumerate(modules):
        prefix = f"{index}." if index else ""
        for name, tensor in sorted(module.state_dict().items()):
            if tensor.is_meta:
                raise ValueError(f"cannot fingerprint '{name}': it is on the meta device (no values)")
            hasher.update(f"{prefix}{name}|{tensor.dtype}|{tuple(tensor.shape)};".encode())
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // FINGERPRINT_SAMPLES_PER_TENSOR)
            sample = flat[::step][:FINGERPRINT_SAMPLES_PER_TENSOR].to("cpu", torch.float64)
            hasher.update(sample.numpy().tobytes())
    return hasher.hexdigest()[:16]
