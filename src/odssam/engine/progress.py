"""Moved to :mod:`odssam.utils.progress`; this name stays until the trainer imports it from there."""

from odssam.utils.progress import progress_bar

__all__ = ["progress_bar"]
