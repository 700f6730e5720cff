"""The packaged paper configs are the repository's configs/ (one folder, linked)."""

import pytest
from helpers import REPO_ROOT

from odssam.errors import OdsSamError
from odssam.reproduce.configs import config_dir, packaged_config_dir, read_config_dict
from odssam.reproduce.tables import PROFILE_CONFIG, TABLES


def test_repository_configs_are_the_packaged_ones():
    assert (REPO_ROOT / "configs").resolve() == packaged_config_dir().resolve()


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
