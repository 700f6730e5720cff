"""ODS-SAM: the frozen SAM driven by the learned dense prompt (paper Figure 1).

Dataflow (DESIGN.md section 1)::

    image (uint8, any size) --sam_preprocess--> x: Bx3x1024x1024 (normalised, zero-padded)
    x --frozen SAM image encoder-->                      E: Bx256x64x64
    x --bilinear to 512--> prompt encoder (trainable) --> P: Bx256x64x64
    SAM mask decoder (frozen)(E, image_pe, sparse=empty 1x0x256, dense=P) --> logits Bx1x256x256

Only ``prompt_encoder`` has trainable parameters. ``encode`` and ``decode`` are split
so a cached image embedding can be reused (training with an embedding cache,
prediction of several prompts on one image).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from odssam.config import ModelConfig
from odssam.models.fast_encoder import accelerate_image_encoder
from odssam.models.prompt_encoder import build_prompt_encoder
from odssam.models.sam import build_sam, freeze_sam
from odssam.models.transforms import postprocess_logits, sam_preprocess

Size = tuple[int, int]


class OdsSam(nn.Module):
    """Frozen SAM + learned prompt encoder.

    Args:
        sam: A ``segment_anything.modeling.Sam``; it is frozen here (no gradients, eval mode).
        prompt_encoder: Maps Bx3xSxS (S = ``prompt_input_size``) to the dense prompt
            Bx256xhxw, where hxw is SAM's image-embedding grid.
        prompt_input_size: Side of the halved SAM input fed to the prompt encoder.
    """

    def __init__(self, sam: nn.Module, prompt_encoder: nn.Module, prompt_input_size: int = 512):
        super().__init__()
        self.sam = freeze_sam(sam)
        self.prompt_encoder = prompt_encoder
        self.prompt_input_size = prompt_input_size

    # ------------------------------------------------------------------ properties

    @property
    def image_size(self) -> int:
        """Side of SAM's padded square input (1024 for the official models)."""
        return int(self.sam.image_encoder.img_size)

    @property
    def embedding_size(self) -> int:
        """Side of SAM's image embedding grid (64 for the official models)."""
        return self.image_size // 16

    @property
    def logit_size(self) -> int:
        """Side of the mask decoder's low-resolution logits (256 for the official models)."""
        return 4 * self.embedding_size

    def train(self, mode: bool = True) -> OdsSam:
        """Switch the prompt encoder's mode; SAM stays in eval mode (it is frozen)."""
        super().train(mode)
        self.sam.eval()
        return self

    # ------------------------------------------------------------------ stages

    def preprocess(self, images) -> tuple[torch.Tensor, list[Size], list[Size]]:
        """Resize, normalise and pad images for SAM.

        Args:
            images: A list of HxWx3 uint8 arrays, or a Bx3xHxW tensor.

        Returns:
            ``(x, input_sizes, original_sizes)``: x is Bx3xSxS float on the model's device.
        """
        x, input_sizes, original_sizes = sam_preprocess(images, self.image_size)
        return x.to(self._device()), input_sizes, original_sizes

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen SAM image encoder: Bx3xSxS -> Bx256x(S/16)x(S/16)."""
        return self.sam.image_encoder(x)

    def prompt(self, x: torch.Tensor) -> torch.Tensor:
        """Learned dense prompt: Bx3xSxS -> Bx256x(S/16)x(S/16)."""
        if x.shape[-1] != self.prompt_input_size:
            x = F.interpolate(
                x, size=(self.prompt_input_size, self.prompt_input_size), mode="bilinear", align_corners=False
            )
        prompt = self.prompt_encoder(x)
        if prompt.shape[-1] != self.embedding_size:
            # A prompt input size other than half of SAM's input gives another grid.
            size = (self.embedding_size, self.embedding_size)
            prompt = F.interpolate(prompt, size=size, mode="bilinear", align_corners=False)
        return prompt

    def decode(self, image_embeddings: torch.Tensor, dense_prompt: torch.Tensor) -> torch.Tensor:
        """Frozen SAM mask decoder with a dense prompt and no sparse prompt.

        The sparse prompt has batch 1 on purpose: the official decoder repeats the image
        embedding once per sparse prompt, so a batch of B sparse prompts with B images
        would mix images. With batch 1 the call broadcasts and equals a per-image loop.

        Args:
            image_embeddings: Bx256xhxw from :meth:`encode` (or the embedding cache).
            dense_prompt: Bx256xhxw from :meth:`prompt`.

        Returns:
            Mask logits Bx1x(4h)x(4w).
        """
        dense_prompt = dense_prompt.to(image_embeddings.dtype)
        sparse = image_embeddings.new_zeros((1, 0, dense_prompt.shape[1]))
        image_pe = self.sam.prompt_encoder.get_dense_pe().to(image_embeddings.dtype)
        logits, _ = self.sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense_prompt,
            multimask_output=False,
        )
        return logits

    def forward(self, x: torch.Tensor, image_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """Preprocessed images Bx3xSxS -> logits Bx1x(S/4)x(S/4).

        Args:
            x: Output of :meth:`preprocess`.
            image_embeddings: Optional cached SAM embeddings of ``x`` (skips the encoder).
        """
        if image_embeddings is None:
            image_embeddings = self.encode(x)
        return self.decode(image_embeddings, self.prompt(x))

    def postprocess(
        self, logits: torch.Tensor, input_sizes: Sequence[Size], original_sizes: Sequence[Size]
    ) -> list[torch.Tensor]:
        """Logits Bx1xhxw -> one 1xHxW logit map per image at its original size."""
        return postprocess_logits(logits, input_sizes, original_sizes, self.image_size)

    @torch.no_grad()
    def predict_probabilities(self, images) -> list[np.ndarray]:
        """Images (list of HxWx3 uint8 or Bx3xHxW) -> list of HxW float32 probability maps."""
        x, input_sizes, original_sizes = self.preprocess(images)
        logits = self(x)
        maps = self.postprocess(logits.float(), input_sizes, original_sizes)
        return [torch.sigmoid(m[0]).cpu().numpy() for m in maps]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.prompt_encoder.parameters() if p.requires_grad]

    def _device(self) -> torch.device:
        return next(self.prompt_encoder.parameters()).device


def build_ods_sam(
    cfg: ModelConfig | None = None, checkpoint: str | None = None, *, feature_encoder_weights: bool = True
) -> OdsSam:
    """Build ODS-SAM from a :class:`ModelConfig` (defaults: ViT-H + the paper's prompt encoder).

    Args:
        cfg: Model configuration.
        checkpoint: Overrides ``cfg.sam.checkpoint`` (a path, ``"auto"`` or ``None``).
        feature_encoder_weights: Load the feature encoder's starting weights
            (``cfg.prompt_encoder.feature_encoder.checkpoint``). Pass ``False`` when the prompt
            encoder's weights will come from a trained odssam checkpoint, which must load
            without the original file.
    """
    cfg = cfg or ModelConfig()
    sam_checkpoint = checkpoint if checkpoint is not None else cfg.sam.checkpoint
    with torch.random.fork_rng(devices=[]):
        # Random SAM weights (no checkpoint) must be reproducible for a saved run to reload.
        torch.manual_seed(cfg.sam.init_seed)
        sam = build_sam(cfg.sam.variant, checkpoint=sam_checkpoint, image_size=cfg.sam.image_size)
    if cfg.sam.fast_encoder:
        # Same parameters and state-dict keys; picks its attention kernel per call (Triton on CUDA).
        sam.image_encoder = accelerate_image_encoder(sam.image_encoder)
    prompt_encoder = build_prompt_encoder(cfg.prompt_encoder, load_weights=feature_encoder_weights)
    return OdsSam(sam, prompt_encoder, prompt_input_size=cfg.prompt_encoder.input_size)
