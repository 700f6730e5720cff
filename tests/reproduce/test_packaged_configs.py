"""The packaged paper configs are the repository's configs/, byte for byte."""

from pathlib import Path

import pytest
from helpers import REPO_ROOT

from odssam.errors import OdsSamError
from odssam.reproduce.configs import config_dir, packaged_config_dir, read_config_dict
from odssam.reproduce.tables import PROFILE_CONFIG, TABLES


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.yaml"))}


def test_packaged_copy_is_identical_to_configs():
    repo, packaged = _files(REPO_ROOT / "configs"), _files(packaged_config_dir())
    assert sorted(repo) == sorted(packaged), "refresh the copy: cp -r configs/. src/odssam/configs/"
    changed = [name for name in repo if repo[name] != packaged[name]]
    assert not changed, f"src/odssam/configs differs from configs/ in {changed}: cp -r configs/. src/odssam/configs/"


def test_every_table_config_exists():
    folder = config_dir()
    names = {PROFILE_CONFIG} | {
        name for spec in TABLES.values() for e in spec.experiments for name in (e.config, e.data_config) if name
    }
    for name in names:
        assert isinstance(read_config_dict(folder, name), dict)


def test_bad_config_folders(tmp_path):
    with pytest.raises(OdsSamError, match="--configs folder not found"):
        config_dir(tmp_path / "nope")
    with pytest.raises(OdsSamError, match="config file not found"):
        read_config_dict(tmp_path, "monuseg.yaml")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(OdsSamError, match="must be a mapping"):
        read_config_dict(tmp_path, "bad.yaml")
