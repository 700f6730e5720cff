"""Fixtures of the reliability suite: the shared inputs every case starts from."""

from __future__ import annotations

import pytest
import torch

from cases import World, make_world


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    """A small folder dataset, a tiny checkpoint and its reference prediction (made once)."""
    torch.set_num_threads(1)
    return make_world(tmp_path_factory.mktemp("reliability_world"))
