"""Numeric precision of training and evaluation, under the names the training loop imports.

The resolver itself is :mod:`odssam.utils.device` (one for training, evaluation and
prediction); ``autocast_dtype`` is its :func:`~odssam.utils.device.resolve_precision`.
"""

from odssam.utils.device import PRECISIONS, autocast
from odssam.utils.device import resolve_precision as autocast_dtype

__all__ = ["PRECISIONS", "autocast", "autocast_dtype"]
