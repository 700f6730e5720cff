"""Fixtures shared by the whole test suite."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path, monkeypatch):
    """Keep every test away from the user's real checkpoint cache."""
    monkeypatch.setenv("ODSSAM_CACHE_DIR", str(tmp_path / "odssam-cache"))


@pytest.fixture
def rng():
    """A seeded NumPy generator, so generated test data is the same on every run."""
    return np.random.default_rng(0)
