"""Fixtures of the ``odssam reproduce`` tests: generated datasets and tiny-model overrides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The dataset-layout factories live with the data tests, the generated folder splits with the
# engine tests; reuse them rather than copy them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from reproduce_helpers import TINY_OVERRIDES, set_arguments  # noqa: E402


@pytest.fixture
def tiny_sets() -> list[str]:
    """``--set`` arguments giving every run configs/tiny.yaml's model and a one-epoch recipe."""
    return set_arguments(TINY_OVERRIDES)
