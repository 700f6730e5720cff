"""One resolver of device and precision for training, evaluation and prediction."""

from __future__ import annotations

import pytest
import torch

from odssam.engine.distributed import process_device
from odssam.errors import OdsSamError
from odssam.inference import predictor
from odssam.utils.device import autocast, resolve_device, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_precision_auto_is_bf16_on_cuda_only():
    assert resolve_precision("auto", CPU) is None and resolve_precision("auto", CUDA) is torch.bfloat16
    assert resolve_precision("bf16", CPU) is torch.bfloat16 and resolve_precision("fp32", CUDA) is None
    with pytest.raises(OdsSamError, match="precision 'fp16' is not one of auto, bf16, fp32"):
        resolve_precision("fp16", CUDA)


def test_device_names():
    assert resolve_device("cpu") == CPU and process_device("cpu") == CPU
    assert resolve_device(None) == resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(OdsSamError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        for resolve in (resolve_device, process_device):
            with pytest.raises(OdsSamError, match="'cuda:1' requested but CUDA is not available"):
                resolve("cuda:1")


def test_autocast_is_a_no_op_for_fp32():
    with autocast(CPU, None):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(CPU, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16


def test_the_public_inference_names_are_the_same_functions():
    assert predictor.resolve_precision is resolve_precision and predictor.resolve_device is resolve_device
    assert predictor.PRECISIONS == ("auto", "bf16", "fp32")
