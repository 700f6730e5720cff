"""Damaged, odd and NaN checkpoints are refused in one line; NaN outputs and diverging runs stop clearly.

``torch.load`` does not check the CRCs of the zip records ``torch.save`` writes, so without
the payload digest a flipped bit in a weight loads silently.
"""

from __future__ import annotations

import copy
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_CONFIG, checkpoint_payload, random_rgb, tiny_model_config

import odssam
from odssam.checkpoint import load_checkpoint, load_model_from_checkpoint, payload_digest, save_checkpoint
from odssam.cli.main import main
from odssam.config import ExperimentConfig, with_overrides
from odssam.engine.epoch import TrainingDiverged
from odssam.engine.trainer import train
from odssam.errors import OdsSamError
from odssam.inference.batch import NonFiniteOutput, PendingMaps, predict_probabilities


def small_payload() -> dict:
    """A checkpoint dict with a few small tensors: small enough to flip every one of its bits' bytes."""
    generator = torch.Generator().manual_seed(0)
    return {
        "format": "odssam", "version": 1, "config": {"name": "small", "train": {"lr": 0.001}},
        "prompt_encoder": {
            "conv.weight": torch.randn(4, 3, generator=generator),
            "conv.bias": torch.randn(4, generator=generator),
            "norm.num_batches_tracked": torch.tensor(7),
        },
        "sam_fingerprint": "abc", "epoch": 1, "step": 3, "best_metric": None,
    }


def flipped(raw: bytes, index: int, path: Path) -> Path:
    """``raw`` with bit ``index % 8`` of byte ``index`` flipped, written to ``path``."""
    damaged = bytearray(raw)
    damaged[index] ^= 1 << (index % 8)
    path.write_bytes(bytes(damaged))
    return path


def same_tensors(left: dict, right: dict) -> bool:
    return left.keys() == right.keys() and all(
        left[k].dtype == right[k].dtype and torch.equal(left[k], right[k]) for k in left
    )


def load_or_refuse(path: Path):
    """``load_checkpoint(path)``, or ``None`` when it is refused with an OdsSamError naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the pickle protocol of some flips
        try:
            return load_checkpoint(path)
        except OdsSamError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            return None


def test_every_byte_of_a_small_checkpoint_flipped_is_refused_or_loads_the_same_payload(tmp_path):
    path = save_checkpoint(tmp_path / "small.pt", small_payload())
    raw, reference = path.read_bytes(), load_checkpoint(path)
    refused = 0
    for index in range(len(raw)):
        loaded = load_or_refuse(flipped(raw, index, tmp_path / "flipped.pt"))
        if loaded is None:
            refused += 1
            continue
        # Loaded: the flip hit bytes torch ignores (zip CRCs, padding), so nothing changed.
        assert same_tensors(loaded["prompt_encoder"], reference["prompt_encoder"]), index
        assert {k: v for k, v in loaded.items() if k != "prompt_encoder"} == {
            k: v for k, v in reference.items() if k != "prompt_encoder"
        }, index
    # Every byte of the tensor data and the pickle is covered: a large share is refused.
    assert refused > len(raw) // 3


def test_flips_in_the_tiny_models_checkpoint_never_load_other_weights(tiny_model, tmp_path):
    cfg = ExperimentConfig(name="tiny", model=tiny_model_config())
    path = save_checkpoint(tmp_path / "best.pt", checkpoint_payload(tiny_model, cfg))
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        pickle_start = archive.getinfo(next(n for n in archive.namelist() if n.endswith("data.pkl"))).header_offset
    weights = tiny_model.prompt_encoder.state_dict()
    # Evenly over the file (mostly weight bytes), plus the pickle that says what they are.
    positions = list(range(7, len(raw), len(raw) // 30)) + list(range(pickle_start, pickle_start + 3000, 301))
    refused = 0
    for index in positions:
        loaded = load_or_refuse(flipped(raw, index, tmp_path / "flipped.pt"))
        if loaded is None:
            refused += 1
        else:
            assert same_tensors(loaded["prompt_encoder"], weights), index
    assert refused > len(positions) // 2
    # The model rebuild reads through the same checks.
    weight_flip = flipped(raw, len(raw) // 2, tmp_path / "model.pt")
    with pytest.raises(OdsSamError, match="damaged: tensor digest mismatch"):
        load_model_from_checkpoint(weight_flip)


def test_the_digest_covers_values_and_shapes_and_old_files_without_one_still_load(tmp_path):
    payload = small_payload()
    changed_value = {**payload, "epoch": 2}
    weights = payload["prompt_encoder"]
    reshaped = {**payload, "prompt_encoder": {**weights, "conv.weight": weights["conv.weight"].reshape(3, 4)}}
    assert len({payload_digest(payload), payload_digest(changed_value), payload_digest(reshaped)}) == 3
    assert payload_digest(payload) == payload_digest({**payload, "digest": "anything"})

    path = tmp_path / "old.pt"
    torch.save(payload, path)  # as odssam wrote checkpoints before digests
    assert same_tensors(load_checkpoint(path)["prompt_encoder"], payload["prompt_encoder"])
    torch.save({**payload, "digset": "sha256:0"}, path)  # the digest's key damaged
    with pytest.raises(OdsSamError, match="damaged: no digest, and entries no checkpoint holds: digset"):
        load_checkpoint(path)
    torch.save({**payload, "digest": payload_digest(changed_value)}, path)
    with pytest.raises(OdsSamError, match="old.pt: damaged: tensor digest mismatch"):
        load_checkpoint(path)


def odd_payloads() -> dict[str, object]:
    payload = small_payload()
    return {
        "a list": ([payload], "holds a list, not a dict"),
        "config as text": ({**payload, "config": "name: small"}, "entry 'config' must be a mapping"),
        "weights as a list": (
            {**payload, "prompt_encoder": [torch.zeros(2)]}, "entry 'prompt_encoder' must be a mapping"
        ),
        "a weight as a list": (
            {**payload, "prompt_encoder": {"conv.weight": [1.0, 2.0]}},
            r"entry 'prompt_encoder\['conv.weight'\]' must be a tensor, got list",
        ),
        "epoch as text": ({**payload, "epoch": "1"}, "entry 'epoch' must be an integer"),
    }


@pytest.mark.parametrize("kind", list(odd_payloads()))
def test_odd_payloads_are_refused_naming_the_file_and_the_entry(kind, tmp_path):
    content, message = odd_payloads()[kind]
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(OdsSamError, match=f"odd.pt: .*{message}"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04 half a zip header"])
def test_short_and_text_files_are_refused(content, tmp_path):
    path = tmp_path / "short.pt"
    path.write_bytes(content)
    with pytest.raises(OdsSamError, match="short.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_a_zip_with_a_missing_record_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "full.pt", small_payload())
    holed = tmp_path / "holed.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(holed, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith("/data/1"):
                target.writestr(info, source.read(info))
    with pytest.raises(OdsSamError, match=r"holed.pt: not a readable checkpoint .*data/1"):
        load_checkpoint(holed)


# --------------------------------------------------------------------------- NaN weights and outputs


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory, tiny_model) -> tuple[Path, str]:
    """The tiny model with one NaN in a weight, saved as a (valid, digested) checkpoint; the weight's name."""
    model = copy.deepcopy(tiny_model)
    name, weight = next((n, p) for n, p in model.prompt_encoder.named_parameters() if p.ndim > 1)
    with torch.no_grad():
        weight.view(-1)[3] = float("nan")
    path = tmp_path_factory.mktemp("nan") / "best.pt"
    save_checkpoint(path, checkpoint_payload(model, ExperimentConfig(name="tiny", model=tiny_model_config())))
    return path, name


@pytest.fixture(scope="module")
def huge_weights_checkpoint(tmp_path_factory, tiny_model) -> Path:
    """Finite weights too large for float32 arithmetic (as a diverged run leaves them): NaN outputs."""
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for parameter in model.prompt_encoder.parameters():
            parameter.mul_(1e30)
    path = tmp_path_factory.mktemp("huge") / "best.pt"
    return save_checkpoint(path, checkpoint_payload(model, ExperimentConfig(name="tiny", model=tiny_model_config())))


def test_nan_weights_are_refused_by_odssam_load_naming_the_tensor(nan_checkpoint):
    path, name = nan_checkpoint
    with pytest.raises(OdsSamError, match=f"best.pt: weight '{name}' holds NaN or infinite values"):
        odssam.load(path, device="cpu")


def reader_command(command: str, checkpoint: Path, folder_dataset: Path, output: Path) -> list[str]:
    """Arguments of an ``odssam`` command that reads ``checkpoint`` first (on the CPU)."""
    return {
        "predict": ["predict", str(folder_dataset / "test" / "images"), "--output", str(output / "p")],
        "eval": ["eval", "--dataset", "folder", "--root", str(folder_dataset), "--device", "cpu"],
        "export": ["export", "--output", str(output / "m.onnx")],
    }[command] + ["--checkpoint", str(checkpoint)]


@pytest.mark.parametrize("command", ["predict", "eval", "export"])
def test_nan_weights_are_refused_by_every_command(command, nan_checkpoint, folder_dataset, tmp_path, capsys):
    path, name = nan_checkpoint
    assert main(reader_command(command, path, folder_dataset, tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"weight '{name}' holds NaN or infinite values" in err and str(path) in err
    assert "Traceback" not in err


def test_nan_outputs_are_refused_in_the_inference_path(huge_weights_checkpoint, folder_dataset, tmp_path, capsys):
    pending = PendingMaps([torch.ones(3, 3), torch.tensor([[0.5, float("nan")]])])
    with pytest.raises(NonFiniteOutput, match=r"image 2 of its batch"):
        pending.wait()
    model, _ = load_model_from_checkpoint(huge_weights_checkpoint)  # finite weights: they load
    with pytest.raises(NonFiniteOutput, match="NaN or infinite"):
        predict_probabilities(model, [random_rgb(np.random.default_rng(0), 40, 56)])

    for command in ("predict", "eval"):
        assert main(reader_command(command, huge_weights_checkpoint, folder_dataset, tmp_path)) == 2, command
        err = capsys.readouterr().err
        assert "the model's output holds NaN or infinite values" in err and "Traceback" not in err, command
    table = tmp_path / "p" / "predictions.csv"
    assert not table.exists() or "nan" not in table.read_text()


def test_odd_payloads_are_refused_by_every_reader(tiny_config, folder_dataset, tmp_path, capsys):
    path = tmp_path / "runs" / "tiny" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save({**small_payload(), "config": "name: tiny"}, path)
    message = "entry 'config' must be a mapping (the experiment config), got str"
    with pytest.raises(OdsSamError, match=re.escape(message)):
        odssam.load(path, device="cpu")
    readers = [reader_command(command, path, folder_dataset, tmp_path) for command in ("predict", "eval", "export")]
    for args in [*readers, ["train", "--resume", str(path.parent), "--no-progress"]]:
        assert main(args) == 2, args[0]
        err = capsys.readouterr().err
        assert message in err and str(path) in err and "Traceback" not in err, args[0]
    with pytest.raises(OdsSamError, match=re.escape(message)):
        train(tiny_config, resume=True, progress=False)


# --------------------------------------------------------------------------- diverging runs


def diverging(cfg: ExperimentConfig, lr: float, **changes) -> ExperimentConfig:
    """``cfg`` with a learning rate beyond the configurable range (train.lr <= 1 is checked at load)."""
    cfg = with_overrides(cfg, {"train.max_steps": 1, "train.final_eval": False, **changes})
    object.__setattr__(cfg.train, "lr", lr)
    return cfg


def test_weights_that_become_inf_after_a_finite_loss_stop_the_run(tiny_config, monkeypatch):
    adam_step = torch.optim.Adam.step

    def overflowing_step(self, *args, **kwargs):  # as an update too large for float32 would
        result = adam_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", overflowing_step)
    cfg = with_overrides(tiny_config, {"train.max_steps": 1, "train.final_eval": False})
    expected = r"weight '.+' became NaN or infinite in epoch 1 \(by step 1\); no checkpoint"
    with pytest.raises(TrainingDiverged, match=expected):
        train(cfg, progress=False)
    assert not (Path(tiny_config.train.output_dir) / "tiny" / "last.pt").exists()


def test_outputs_that_overflow_in_validation_stop_the_run_with_the_divergence_message(tiny_config):
    # lr 1e30: finite weights, but their products overflow: the validation outputs are NaN.
    expected = "outputs on the validation images became NaN or infinite; no checkpoint"
    with pytest.raises(TrainingDiverged, match=expected):
        train(diverging(tiny_config, 1e30, **{"data.val_count": 2}), progress=False)


def test_a_diverging_cli_run_exits_2_with_one_line(tiny_config, monkeypatch, capsys):
    from odssam.engine import trainer

    train_as_configured = trainer.train
    monkeypatch.setattr(trainer, "train", lambda cfg, **kwargs: train_as_configured(diverging(cfg, 1e30), **kwargs))
    train_cfg = tiny_config.train
    settings = [f"data.root={tiny_config.data.root}", f"train.output_dir={train_cfg.output_dir}", "data.val_count=2"]
    args = ["train", "--config", str(TINY_CONFIG), *(f"--set={setting}" for setting in settings), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("odssam train: error: training stopped: the model's outputs") and err.count("\n") == 1


def test_the_divergence_message_names_a_damaged_last_checkpoint_instead_of_failing(tmp_path):
    from odssam.engine.epoch import diverged_message
    from odssam.engine.run_setup import RunFolder

    folder = RunFolder(tmp_path)
    save_checkpoint(folder.last, small_payload())
    assert f"the last good checkpoint is {folder.last} (epoch 1)" in diverged_message("the loss became nan", folder)
    folder.last.write_bytes(folder.last.read_bytes()[:100])
    message = diverged_message("the loss became nan", folder)
    assert message.startswith("training stopped: the loss became nan; no usable checkpoint is left")
    assert f"{folder.last}: not a readable checkpoint" in message
