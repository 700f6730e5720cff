"""Every experiment config under configs/ parses, names real datasets/metrics, and builds its model.

The big models are built on the meta device (shapes only, no memory, no weights), with a
small SAM swapped in where a whole OdsSam is assembled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from odssam.config import load_config, with_overrides
from odssam.data import list_datasets
from odssam.engine.setup import monitor_direction
from odssam.models.prompt_encoder import build_prompt_encoder
from odssam.models.registry import SEGMENTER_VARIANTS, build_model
from odssam.models.sam2 import SAM2_VARIANTS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
PAPER_PROMPT_ENCODER_PARAMS = 53.687e6
NOT_PAPER_CONFIGS = ("tiny.yaml", "kvasir_sam2.yaml")  # the CPU stand-in; the SAM 2 variant of a recipe


def config_id(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


def prompt_encoder_params(path: Path) -> int:
    with torch.device("meta"):
        encoder = build_prompt_encoder(load_config(path).model.prompt_encoder)
    return sum(p.numel() for p in encoder.parameters())


def test_there_is_a_config_per_paper_experiment():
    names = {config_id(p) for p in CONFIGS}
    expected = {"mvtec_ad.yaml", "polyp_pranet.yaml", "kvasir.yaml", "clinicdb.yaml", "monuseg.yaml",
                "glas.yaml", "tiny.yaml"}
    expected |= {f"ablations/{n}.yaml" for n in ("sam_basic_prompt", "odssm", "odconv", "odssm_odconv")}
    expected |= {f"ablations/odconv_{k}.yaml" for k in (1, 2, 3)} | {f"ablations/odssm_{k}.yaml" for k in (1, 2, 3)}
    expected |= {"ablations/odconv_no_dwconv.yaml", "ablations/odconv_2_stacked.yaml", "ablations/odconv_3_stacked.yaml"}
    expected |= {"ablations/feature_encoder_scratch.yaml"}
    assert expected <= names


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_config_parses_and_builds_its_model(path):
    cfg = load_config(path)
    assert cfg.data.dataset in list_datasets()
    assert cfg.model.sam.variant in SEGMENTER_VARIANTS
    monitor_direction(cfg.train)  # the monitored metric is one the metrics produce
    small_sam = {"model.sam.variant": "vit_micro", "model.sam.image_size": 256, "model.sam.checkpoint": None}
    with torch.device("meta"):  # shapes only: no SAM or feature-encoder weights are read
        model = build_model(with_overrides(cfg, small_sam).model, feature_encoder_weights=False)
    assert model.trainable_parameters()
    if cfg.model.name == "unet":  # the baseline without SAM
        assert model.segmenter is None
    else:
        assert all(not p.requires_grad for p in model.segmenter.parameters())


# Baselines without SAM (configs/baselines/) share the training recipe, not the model.
PAPER_CONFIGS = [p for p in CONFIGS if p.name not in NOT_PAPER_CONFIGS and p.parent.name != "baselines"]


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=config_id)
def test_paper_configs_use_the_paper_recipe(path):
    cfg = load_config(path)
    assert cfg.model.sam.variant == "vit_h" and cfg.model.sam.checkpoint == "auto"
    train = cfg.train
    assert (train.epochs, train.batch_size, train.lr, train.weight_decay) == (200, 10, 1e-3, 1e-5)
    assert (train.dice_weight, train.bce_weight, train.lr_schedule) == (0.5, 0.5, "constant")
    # The paper trains on the whole training set: no validation hold-out, the last epoch is reported.
    assert cfg.data.val_count == 0
    # The feature encoder starts from EfficientViT-SAM-L1's weights, with the neck details
    # they need; one ablation trains the same model from scratch.
    if cfg.model.name != "ods_sam":
        return  # a baseline (configs/baselines/) has no feature encoder
    encoder = cfg.model.prompt_encoder.feature_encoder
    expected = None if path.stem == "feature_encoder_scratch" else "auto"
    assert (encoder.checkpoint, encoder.upsample_mode, encoder.norm_eps) == (expected, "bicubic", 1e-6)


def test_full_model_configs_have_the_papers_parameter_count():
    for name in ("kvasir.yaml", "mvtec_ad.yaml", "ablations/odssm_odconv.yaml"):
        assert prompt_encoder_params(CONFIG_DIR / name) == pytest.approx(PAPER_PROMPT_ENCODER_PARAMS, rel=5e-3)


def test_ablations_switch_what_their_tables_vary():
    ablation = CONFIG_DIR / "ablations"
    params = {p.stem: prompt_encoder_params(p) for p in ablation.glob("*.yaml")}
    assert params["sam_basic_prompt"] < params["odssm"] < params["odconv"] < params["odssm_odconv"]
    assert params["odconv_1"] < params["odconv_2"] < params["odconv_3"]
    assert params["odssm_1"] < params["odssm_2"] < params["odssm_3"]
    assert params["odconv_2"] == params["odssm_1"] == params["odssm_odconv"]
    basic = load_config(ablation / "sam_basic_prompt.yaml").model.prompt_encoder
    assert not (basic.use_dwconv or basic.use_ssm or basic.use_odconv)


def test_table4_odconv_row_ships_both_readings_of_the_dw_conv():
    ablation = CONFIG_DIR / "ablations"
    default, other = (load_config(ablation / f"{n}.yaml").model.prompt_encoder for n in ("odconv", "odconv_no_dwconv"))
    assert (default.use_dwconv, default.use_ssm, default.use_odconv) == (True, False, True)
    assert (other.use_dwconv, other.use_ssm, other.use_odconv) == (False, False, True)
    assert prompt_encoder_params(ablation / "odconv_no_dwconv.yaml") < prompt_encoder_params(ablation / "odconv.yaml")


@pytest.mark.parametrize("layers", [2, 3])
def test_table5_stacked_configs_differ_only_in_the_arrangement(layers):
    ablation = CONFIG_DIR / "ablations"
    parallel = load_config(ablation / f"odconv_{layers}.yaml")
    stacked = load_config(ablation / f"odconv_{layers}_stacked.yaml")
    assert (parallel.model.prompt_encoder.odconv.arrangement, stacked.model.prompt_encoder.odconv.arrangement) == (
        "parallel", "stacked"
    )
    assert with_overrides(stacked, {"model.prompt_encoder.odconv.arrangement": "parallel", "name": parallel.name}) == (
        parallel
    )
    assert prompt_encoder_params(ablation / f"odconv_{layers}_stacked.yaml") == prompt_encoder_params(
        ablation / f"odconv_{layers}.yaml"
    )


def test_polyp_config_tests_on_the_five_sets():
    from odssam.data.datasets.pranet import resolve_test_set

    cfg = load_config(CONFIG_DIR / "polyp_pranet.yaml")
    assert sorted(resolve_test_set(name) for name in cfg.data.test_sets) == sorted(
        ["Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300"]
    )


def test_mvtec_category_is_a_field():
    cfg = load_config(CONFIG_DIR / "mvtec_ad.yaml", ["data.category=screw"])
    assert cfg.data.dataset == "mvtec" and cfg.data.category == "screw"


def test_the_sam2_config_is_the_kvasir_recipe_with_sam2_hiera_l():
    sam2 = load_config(CONFIG_DIR / "ablations" / "kvasir_sam2.yaml")
    assert sam2.model.sam.variant == "sam2_hiera_l" in SAM2_VARIANTS
    assert sam2.model.sam.checkpoint is None  # no published digest: "auto" is refused, the file is passed by path
    kvasir = load_config(CONFIG_DIR / "kvasir.yaml")
    as_sam = {"name": kvasir.name, "model.sam.variant": "vit_h", "model.sam.checkpoint": "auto"}
    assert with_overrides(sam2, as_sam) == kvasir
