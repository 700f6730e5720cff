"""Fixtures: small generated datasets in each exact layout (see ``data_layouts``)."""

from __future__ import annotations

import pytest

from data_layouts import (
    make_clinicdb,
    make_folder,
    make_glas,
    make_kvasir,
    make_monuseg,
    make_mvtec,
    make_pranet,
)


@pytest.fixture
def kvasir_root(tmp_path, rng):
    root = tmp_path / "Kvasir-SEG"
    make_kvasir(root, rng)
    return root


@pytest.fixture
def clinicdb_root(tmp_path, rng):
    root = tmp_path / "CVC-ClinicDB"
    make_clinicdb(root, rng)
    return root


@pytest.fixture
def pranet_root(tmp_path, rng):
    root = tmp_path / "PraNet"
    make_pranet(root, rng)
    return root


@pytest.fixture
def monuseg_root(tmp_path, rng):
    root = tmp_path / "MoNuSeg"
    make_monuseg(root, rng)
    return root


@pytest.fixture
def glas_root(tmp_path, rng):
    root = tmp_path / "GlaS"
    make_glas(root, rng)
    return root


@pytest.fixture
def mvtec_root(tmp_path, rng):
    root = tmp_path / "MVTec-AD"
    make_mvtec(root, rng)
    return root


@pytest.fixture
def folder_root(tmp_path, rng):
    root = tmp_path / "own"
    make_folder(root, rng)
    return root
