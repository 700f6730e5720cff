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


def _layout_fixture(name: str, folder: str, make):
    """A fixture ``name``: ``tmp_path / folder`` filled by ``make(root, rng)``."""

    @pytest.fixture(name=name)
    def layout_root(tmp_path, rng):
        root = tmp_path / folder
        make(root, rng)
        return root

    return layout_root


kvasir_root = _layout_fixture("kvasir_root", "Kvasir-SEG", make_kvasir)
clinicdb_root = _layout_fixture("clinicdb_root", "CVC-ClinicDB", make_clinicdb)
pranet_root = _layout_fixture("pranet_root", "PraNet", make_pranet)
monuseg_root = _layout_fixture("monuseg_root", "MoNuSeg", make_monuseg)
glas_root = _layout_fixture("glas_root", "GlaS", make_glas)
mvtec_root = _layout_fixture("mvtec_root", "MVTec-AD", make_mvtec)
folder_root = _layout_fixture("folder_root", "own", make_folder)
