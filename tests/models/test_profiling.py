"""Table 7 profile: parameter counts and the analytic scan cost."""

from odssam.config import ModelConfig
from odssam.models import od_ssm
from odssam.models.profiling import format_profile, profile_model


def test_default_profile_matches_the_paper_parameter_count():
    report = profile_model(ModelConfig())
    learnable = report["learnable"]
    assert abs(learnable["params"] / 53.687e6 - 1) < 0.005
    assert sum(c["params"] for c in learnable["children"]) == learnable["params"]
    cfg = ModelConfig()
    expected_scan = od_ssm.ss2d_scan_flops(1, 64, 64, cfg.prompt_encoder.ssm, d_model=256)
    assert learnable["scan_flops"] == expected_scan > 0
    # Conv/linear FLOPs of the prompt encoder at 512: ~56.4 GMACs (DESIGN.md section 2).
    conv_gmacs = (learnable["flops"] - learnable["scan_flops"]) / 2e9
    assert 50 < conv_gmacs < 62, conv_gmacs
    frozen = {p["name"]: p for p in report["frozen"]}
    assert abs(frozen["sam.image_encoder"]["params"] / 637.0e6 - 1) < 0.01
    assert abs(frozen["sam.image_encoder"]["flops"] / 5.96e12 - 1) < 0.05
    assert abs(frozen["sam.mask_decoder"]["params"] / 4.06e6 - 1) < 0.01
    text = format_profile(report)
    assert "prompt_encoder" in text and "scan" in text
