"""Modules built and run on tensors that carry shapes and dtypes but no data.

Profiling (parameters and FLOPs of ViT-H) and shape tests need no values. PyTorch's
``meta`` device would do, but some libraries open ``torch.autocast(device_type=x.device.type)``
inside their forward (timm's EfficientViT attention before timm 1.0.30), and torch rejects
autocast on ``meta``. Fake tensors report the CPU as their device instead, so such code runs,
while nothing is allocated or computed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensorMode, is_fake, unset_fake_temporarily


@contextlib.contextmanager
def shape_only() -> Iterator[None]:
    """Tensors created inside are fake CPU tensors: shapes, dtypes, no memory, no compute."""
    # Real tensors made outside (cached constants, see real_tensors) may enter its ops.
    with FakeTensorMode(allow_non_fake_inputs=True):
        yield


def real_tensors() -> contextlib.AbstractContextManager:
    """Inside :func:`shape_only`, make real tensors again (for values that are cached)."""
    return unset_fake_temporarily()


def holds_no_data(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a meta or fake tensor, whose values cannot be read."""
    return tensor.device.type == "meta" or is_fake(tensor)
