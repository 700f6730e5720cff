"""What the fast-encoder tests share: a tiny official SAM image encoder, one torch thread."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT


def tiny_encoder(img_size: int = 256, window_size: int = 14, embed_dim: int = 64, num_heads: int = 2,
                 seed: int = 0) -> ImageEncoderViT:
    """Official encoder, 2 blocks (block 0 windowed, block 1 global), random position tables."""
    torch.manual_seed(seed)
    encoder = ImageEncoderViT(
        img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=2, num_heads=num_heads,
        out_chans=32, use_rel_pos=True, window_size=window_size, global_attn_indexes=(1,),
    )
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                param.normal_(0.0, 0.5)  # SAM zero-initialises these; make them matter
    return encoder.eval()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Autouse in the modules that import it: one intra-op thread, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
