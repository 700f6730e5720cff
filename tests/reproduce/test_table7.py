"""``odssam reproduce table7``: the profile of the paper's model next to the paper's Table 7."""

import csv
import json

from reproduce_helpers import set_arguments

from odssam.cli.main import main


def test_table7_profiles_the_paper_model(tmp_path, capsys):
    assert main(["reproduce", "table7", "--output", str(tmp_path)]) == 0
    with open(tmp_path / "table7" / "table7.csv", newline="") as handle:
        cells = {row["column"]: row for row in csv.DictReader(handle)}
    assert set(cells) == {"Time complexity (GFLOPs)", "GMACs", "Parameters (10⁶)"}
    params = cells["Parameters (10⁶)"]
    assert float(params["paper"]) == 53.687 and abs(float(params["difference"])) < 0.3
    profile = json.loads((tmp_path / "table7" / "profile.json").read_text())
    assert float(params["ours"]) == profile["learnable"]["params"] / 1e6
    assert float(cells["Time complexity (GFLOPs)"]["ours"]) == profile["learnable"]["flops"] / 1e9
    assert cells["GMACs"]["paper"] == ""
    markdown = (tmp_path / "table7" / "table7.md").read_text()
    assert "| Our ODSSAM | 113." in markdown and "53.902" in markdown


def test_table7_follows_set(tmp_path):
    sets = set_arguments([
        "model.prompt_encoder.use_ssm=false",
        "model.prompt_encoder.use_odconv=false",
        "model.sam.variant=vit_micro",  # the frozen SAM is profiled too; keep it small
        "model.sam.image_size=256",
    ])  # fmt: skip
    assert main(["reproduce", "table7", "--output", str(tmp_path), *sets]) == 0
    profile = json.loads((tmp_path / "table7" / "profile.json").read_text())
    assert profile["learnable"]["scan_flops"] == 0
    assert profile["learnable"]["params"] / 1e6 < 45  # the feature encoder alone: 43.6 M
