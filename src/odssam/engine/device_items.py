"""Cached training items held in device memory and batched by index: epochs without a DataLoader.

With the embedding cache a training item is ~3.8 MB (prompt input 3x512x512 fp16, embedding
256x64x64 bf16, target) and a step reads ten of them. A DataLoader re-reads them from the
cache files every epoch, and each epoch's first batch waits for that: its workers read,
pickle through shared memory and pin ~40 MB before the first step can start. On an H200 this
cost ~0.15 s per epoch, half of a MoNuSeg epoch (3 steps). Held on the device, a batch is an
``index_select`` in the sampler's order: the same batches, in the same order, with the same
values (tested against the loader), and no copies from the host at all.

``train.cache_on_device`` decides (:func:`resident_reason`): ``null`` (default) holds them on
CUDA when they take at most :data:`RESIDENT_SHARE` of the device's free memory; ``true``
holds them wherever the run is (the host's memory on the CPU); ``false`` keeps the loader.
Items of unequal shapes (a label-resolution loss on labels of different sizes) stay with the
loader, which pads each batch to its own largest label.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

RESIDENT_SHARE = 0.25  # of the device's free memory, for the automatic choice
LOAD_BATCH = 32  # items per read when filling the device tensors


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes of a dict's tensors (one training item, or all of them stacked)."""
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())


def resident_reason(setting: bool | None, device: torch.device, items: Dataset, free_bytes: int | None = None) -> str | None:
    """Why the training items stay with the DataLoader, or ``None`` when they go to the device.

    Args:
        setting: ``train.cache_on_device`` (``None``: automatic).
        device: Where the run trains.
        items: The cached training items (the first is read to size them).
        free_bytes: The device's free memory (default: asked of CUDA; unused on the CPU).
    """
    if setting is False:
        return "train.cache_on_device is false"
    if setting is None and device.type != "cuda":
        return "on the CPU the loader's workers read in parallel (train.cache_on_device: true holds them in memory)"
    if len(items) == 0:
        return "there are no training items"
    needed = tensor_bytes(items[0]) * len(items)
    if setting is None:
        free = torch.cuda.mem_get_info(device)[0] if free_bytes is None else free_bytes
        if needed > RESIDENT_SHARE * free:
            return (f"the training items take {needed / 2**30:.1f} GiB, more than {RESIDENT_SHARE:.0%} "
                    f"of the device's free {free / 2**30:.1f} GiB")
    return None


class DeviceItems:
    """Every training item, stacked per key: floating-point tensors on the device, the rest on the host.

    Host-side values (the per-image sizes of a label-resolution loss) stay on the host, so
    reading a batch's layout does not wait for the device.

    Attributes:
        tensors: ``key -> N x ...`` stacked over the items, in item order.
        seconds: Time the load took.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], seconds: float = 0.0):
        self.tensors = tensors
        self.seconds = seconds

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.tensors)

    @classmethod
    def load(cls, items: Dataset, device: torch.device, num_workers: int = 0) -> DeviceItems | str:
        """Read every item once (``num_workers`` loader workers) into stacked tensors on ``device``.

        Returns:
            The items, or why they cannot be stacked (items of unequal shapes under a key).
        """
        start = time.perf_counter()
        first = items[0]
        shapes = {key: tuple(tensor.shape) for key, tensor in first.items()}
        tensors = {
            key: torch.empty((len(items), *shape), dtype=tensor.dtype,
                             device=device if tensor.is_floating_point() else "cpu")
            for (key, tensor), shape in zip(first.items(), shapes.values())
        }
        loader = DataLoader(items, batch_size=LOAD_BATCH, num_workers=num_workers, collate_fn=list,
                            pin_memory=device.type == "cuda")
        position = 0
        for chunk in loader:
            for item in chunk:
                for key, stacked in tensors.items():
                    if tuple(item[key].shape) != shapes[key]:
                        return f"training items differ in shape ({key}: {shapes[key]} and {tuple(item[key].shape)})"
                    # From page-locked memory without waiting; the pinned-memory allocator keeps
                    # the source alive until its copy has run.
                    stacked[position].copy_(item[key], non_blocking=True)
                position += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the host chunks are freed after this
        return cls(tensors, time.perf_counter() - start)


class DeviceBatches(Sized):
    """The DataLoader's batches of :class:`DeviceItems`, in ``sampler``'s order.

    The same batches as ``DataLoader(items, batch_size, sampler=sampler, drop_last=drop_last,
    collate_fn=odssam.engine.targets.collate_training_items)`` for items of one shape, already on the device.
    """

    def __init__(self, items: DeviceItems, sampler: Sampler, batch_size: int, drop_last: bool = False):
        self.items = items
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __len__(self) -> int:
        count = len(self.sampler)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.tensor(list(self.sampler), dtype=torch.int64)
        # One upload of the epoch's order; each batch is then a slice of it on the device.
        on_device = {tensor.device: order.to(tensor.device) for tensor in self.items.tensors.values()}
        for batch in range(len(self)):
            start = batch * self.batch_size
            yield {
                key: tensor.index_select(0, on_device[tensor.device][start:start + self.batch_size])
                for key, tensor in self.items.tensors.items()
            }


__all__ = ["DeviceBatches", "DeviceItems", "RESIDENT_SHARE", "resident_reason"]
