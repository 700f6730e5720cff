"""Cached training items held on the device (train.cache_on_device): the loader's batches, the same run."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from odssam.checkpoint import load_checkpoint
from odssam.config import with_overrides
from odssam.engine.device_items import DeviceBatches, DeviceItems, resident_reason
from odssam.engine.targets import collate_training_items
from odssam.engine.trainer import train

from test_checkpoint_writer import assert_same

NO_REPORT = {"train.final_eval": False}
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))


class Items(Dataset):
    """Training items shaped like the cache's: fp16 prompt input, bf16 embedding, fp32 target (+ label sizes)."""

    def __init__(self, count: int, label_sizes: bool = False, unequal_at: int | None = None):
        generator = torch.Generator().manual_seed(0)
        self.items = []
        for index in range(count):
            side = 12 if index == unequal_at else 8
            item = {
                "prompt_input": torch.randn(3, 16, 16, generator=generator).half(),
                "embedding": torch.randn(4, 8, 8, generator=generator).bfloat16(),
                "target": torch.rand(1, side, side, generator=generator),
            }
            if label_sizes:
                item["input_size"] = torch.tensor([index, index + 1])
                item["label_size"] = torch.tensor([side, side])
            self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def loader_batches(items, sampler, batch_size, drop_last):
    return list(DataLoader(items, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                           collate_fn=collate_training_items))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("world_size, batch_size, drop_last", [(1, 4, False), (1, 4, True), (2, 3, False), (1, 11, False)])
@pytest.mark.parametrize("label_sizes", [False, True])
def test_batches_equal_the_loaders_in_order_and_value(device, world_size, batch_size, drop_last, label_sizes):
    items = Items(10, label_sizes=label_sizes)
    resident = DeviceItems.load(items, torch.device(device))
    assert isinstance(resident, DeviceItems) and len(resident) == 10
    for rank in range(world_size):
        sampler = DistributedSampler(items, num_replicas=world_size, rank=rank, shuffle=True, seed=3)
        batches = DeviceBatches(resident, sampler, batch_size, drop_last)
        for epoch in (1, 2):
            sampler.set_epoch(epoch)
            expected = loader_batches(items, sampler, batch_size, drop_last)
            got = list(batches)
            assert len(got) == len(batches) == len(expected)
            for batch, reference in zip(got, expected):
                assert batch.keys() == reference.keys()
                for key, tensor in batch.items():
                    # Floating-point data on the device; host values (label sizes) stay on the host.
                    assert tensor.device.type == (device if tensor.is_floating_point() else "cpu")
                    assert tensor.dtype == reference[key].dtype and torch.equal(tensor.cpu(), reference[key]), key


def test_items_of_unequal_shapes_are_left_to_the_loader():
    reason = DeviceItems.load(Items(6, label_sizes=True, unequal_at=4), torch.device("cpu"))
    assert reason == "training items differ in shape (target: (1, 8, 8) and (1, 12, 12))"


def test_the_automatic_choice_holds_them_on_cuda_when_they_fit():
    items = Items(4)
    per_item = 3 * 16 * 16 * 2 + 4 * 8 * 8 * 2 + 8 * 8 * 4
    cuda = torch.device("cuda")
    assert resident_reason(None, cuda, items, free_bytes=4 * per_item * 4) is None
    too_little = resident_reason(None, cuda, items, free_bytes=4 * per_item * 4 - 1)
    assert too_little is not None and "more than 25% of the device's free" in too_little
    assert "on the CPU" in resident_reason(None, torch.device("cpu"), items)
    assert resident_reason(True, torch.device("cpu"), items) is None
    assert resident_reason(True, cuda, items, free_bytes=1) is None  # asked for: no memory rule
    assert resident_reason(False, cuda, items, free_bytes=1 << 40) == "train.cache_on_device is false"
    assert resident_reason(True, torch.device("cpu"), Items(0)) == "there are no training items"


# On the CPU, where two runs are bit-identical; on a GPU, the batches themselves are compared above
# (two CUDA runs may differ in the last bits whatever feeds them: atomics in the backward).
@pytest.mark.parametrize("loss_resolution", ["logits", "label"])  # label: host-side sizes travel with each batch
def test_a_run_on_resident_items_equals_a_run_on_the_loader(tiny_config, loss_resolution, capsys):
    device = "cpu"
    runs = {}
    for setting in (True, False):
        changes = {**NO_REPORT, "train.epochs": 2, "train.cache_on_device": setting,
                   "train.loss_resolution": loss_resolution,
                   "train.run_name": f"resident_{setting}", "data.num_workers": 0}
        runs[setting] = train(with_overrides(tiny_config, changes), device=device, progress=False)
        said = capsys.readouterr().out
        assert ("training items: 6 on " + device in said) == setting, said
    resident, loader = runs[True], runs[False]
    assert resident.steps == loader.steps
    assert [r["train_loss"] for r in resident.history] == [r["train_loss"] for r in loader.history]
    weights = [load_checkpoint(run.run_dir / "last.pt")["prompt_encoder"] for run in (resident, loader)]
    assert_same(*weights, "prompt_encoder")
