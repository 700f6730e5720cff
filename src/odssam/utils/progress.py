"""Progress bars that degrade to plain iteration when ``tqdm`` is not installed."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def progress_bar(iterable: Iterable, desc: str = "", total: int | None = None, leave: bool = False, **kwargs):
    """``tqdm(iterable)`` on a terminal-friendly stream, or the iterable itself without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True, file=sys.stderr, **kwargs)
