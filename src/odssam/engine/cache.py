"""On-disk cache of everything the frozen part of ODS-SAM computes from an image.

SAM's image encoder is frozen, so its output for a given image never changes during
training: computing it once and reusing it across epochs (and across runs) leaves only
the prompt encoder and the mask decoder in the training step. Per image the cache holds:

=============== ============================== ==========================================
kind            array                          key (sha256 of)
=============== ============================== ==========================================
``embedding``   256xhxw, bf16 (as uint16)/fp16 image bytes, SAM input size, pixel
                                               normalisation, SAM weights fingerprint, dtype
``prompt``      3xPxP fp16: the normalised,    image bytes, SAM input size, prompt input
                padded, resized input of the   size, normalisation
                prompt encoder
``target``      1xTxT uint8: training target   mask bytes, image shape, SAM input size, T
                aligned with the logits (not
                stored for a label-resolution
                loss, whose target is the mask)
``mask``        packed bits of the HxW mask    mask bytes (ground truth for evaluation)
=============== ============================== ==========================================

Each entry is one ``.npy`` file named by its key under ``<root>/v1/<kind>/<key[:2]>/``;
the file tree is the index. A different image, size, SAM checkpoint or dtype gives a
different key, so a stale entry is never reused; files are written atomically (temp +
rename), so ranks of a distributed run and concurrent runs can share one folder. Entries
are read through ``numpy`` memory maps. The prompt input is kept in fp16 rather than bf16:
normalised pixels lie within +-3, where fp16's 10-bit mantissa is 8x finer.

:func:`build_embedding_cache` keeps the GPU busy: the next batch's encoder is queued before
this batch's outputs are handed over, they reach the host through page-locked memory
without a wait on the device, and a bounded pool of threads writes the entries (the same
files as the plain sequential path, ``pipelined=False``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from odssam.engine.distributed import DistInfo, all_gather_objects, barrier
from odssam.engine.targets import label_target
from odssam.errors import OdsSamError
from odssam.models.loss import masks_to_targets
from odssam.inference.batch import BatchInference, HostBatch, one_in_flight, stage_image
from odssam.inference.write_pool import WritePool, default_write_threads
from odssam.models.transforms import PreprocessSpec
from odssam.utils.atomic import atomic_write
from odssam.utils.large_on_cpu import eta_after_first_batch
from odssam.utils.progress import progress_bar

CACHE_LAYOUT_VERSION = "v1"
EMBEDDING_DTYPES: dict[str, tuple[torch.dtype, type]] = {
    # torch dtype in memory, numpy dtype on disk (numpy has no bfloat16: store its bits)
    "bfloat16": (torch.bfloat16, np.uint16),
    "float16": (torch.float16, np.float16),
}
KINDS = ("embedding", "prompt", "target", "mask")
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class CacheParams:
    """Everything besides the image that decides what the frozen model computes.

    Attributes:
        sam_fingerprint: :func:`odssam.models.sam.sam_weights_fingerprint` of the SAM used.
        image_size: Side of SAM's padded input (1024 for the official models).
        prompt_input_size: Side of the prompt encoder's input.
        target_size: Side of the training targets (the logit size, or ``image_size`` for an
            input-resolution loss); ``None`` for a label-resolution loss, whose targets are
            the stored masks (:mod:`odssam.engine.targets`).
        dtype: ``bfloat16`` or ``float16``: how embeddings are stored (``train.cache_dtype``,
            one of :data:`EMBEDDING_DTYPES` by the config checks).
        embedding_parts: Tensors per embedding (1 for SAM; SAM 2 adds its high-resolution
            features). Part 0 is stored as kind ``embedding``, part i as ``embedding.i``.
        resize: The segmenter's resize mode (:class:`~odssam.models.transforms.PreprocessSpec`).
    """

    sam_fingerprint: str
    image_size: int
    prompt_input_size: int
    target_size: int | None
    dtype: str = "bfloat16"
    embedding_parts: int = 1
    resize: str = "longest_side"

    @property
    def preprocess_spec(self) -> PreprocessSpec:
        return PreprocessSpec(self.image_size, self.resize)

    @property
    def embedding_kinds(self) -> tuple[str, ...]:
        """``embedding``, ``embedding.1``, ...: one kind per embedding part."""
        return ("embedding",) + tuple(f"embedding.{part}" for part in range(1, self.embedding_parts))


@dataclass(frozen=True)
class CacheRecord:
    """The cache keys of one sample plus what evaluation needs besides the arrays.

    Attributes:
        keys: Kind -> sha256 hex key (see the module docstring).
        name: Sample name.
        input_size: ``(h, w)`` of the image after resizing to SAM's input (before padding).
        image_shape: ``(H, W)`` of the image (and mask) as the dataset returns it.
    """

    keys: dict[str, str]
    name: str
    input_size: tuple[int, int]
    image_shape: tuple[int, int]


@dataclass
class CacheStats:
    """What one :func:`build_embedding_cache` call found and did (summed over ranks)."""

    images: int = 0
    embedding_hits: int = 0
    embedding_misses: int = 0
    seconds: float = 0.0
    per_kind_misses: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def embedding_from_batch(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The embedding parts of a collated cached batch, in order (``embedding``, ``embedding.1`` ...)."""
    parts = sorted((key for key in batch if key.startswith("embedding")), key=lambda key: (len(key), key))
    return tuple(batch[key] for key in parts)


def prompt_input_from(x: torch.Tensor, prompt_input_size: int) -> torch.Tensor:
    """SAM input Bx3xSxS -> the prompt encoder's input Bx3xPxP, as ``OdsSam.prompt`` resizes it."""
    if x.shape[-1] == prompt_input_size:
        return x
    return F.interpolate(x, size=(prompt_input_size, prompt_input_size), mode="bilinear", align_corners=False)


class EmbeddingCache:
    """Content-addressed store of per-image arrays (see the module docstring).

    Args:
        root: Cache folder (shared between runs).
        params: Preprocessing and model identity that enter the keys.
    """

    def __init__(self, root: str | Path, params: CacheParams):
        self.root = Path(root)
        self.params = params
        self.torch_dtype, self.numpy_dtype = EMBEDDING_DTYPES[params.dtype]
        spec = params.preprocess_spec
        # The kinds every sample needs: no resized targets when the masks are the targets.
        kinds = params.embedding_kinds + KINDS[1:]
        self.kinds = kinds if params.target_size is not None else tuple(k for k in kinds if k != "target")
        normalisation = {"mean": [float(v) for v in spec.pixel_mean], "std": [float(v) for v in spec.pixel_std]}
        if params.resize != "longest_side":  # SAM's keys stay those of caches written before SAM 2
            normalisation["resize"] = params.resize
        self._settings = {
            "embedding": {
                "sam": params.sam_fingerprint,
                "image_size": params.image_size,
                "dtype": params.dtype,
                **normalisation,
            },
            "prompt": {
                "image_size": params.image_size,
                "prompt_input_size": params.prompt_input_size,
                "dtype": "float16",
                **normalisation,
            },
            "target": {"image_size": params.image_size, "target_size": params.target_size},
            "mask": {},
        }
        if params.resize != "longest_side":
            self._settings["target"]["resize"] = params.resize
        for part, kind in enumerate(params.embedding_kinds[1:], start=1):
            self._settings[kind] = {**self._settings["embedding"], "part": part}

    # ------------------------------------------------------------------ keys and files

    def record_for(self, image: np.ndarray, mask: np.ndarray, name: str = "") -> CacheRecord:
        """The keys of one (image, mask) pair: hashes its bytes once for all kinds."""
        height, width = image.shape[:2]
        image_id = array_digest(image)
        mask_id = array_digest(np.asarray(mask, dtype=bool))
        sources = {kind: image_id for kind in self.params.embedding_kinds}
        sources.update({"prompt": image_id, "target": mask_id, "mask": mask_id})
        keys = {}
        for kind in sources:
            description = {"layout": CACHE_LAYOUT_VERSION, "kind": kind, "source": sources[kind]}
            description.update(self._settings[kind])
            if kind == "target":
                description["image_shape"] = [height, width]
            keys[kind] = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
        return CacheRecord(
            keys=keys,
            name=name,
            input_size=self.params.preprocess_spec.input_size(height, width),
            image_shape=(height, width),
        )

    def path(self, kind: str, key: str) -> Path:
        folder = kind.split(".")[0]  # every embedding part lives under embedding/
        return self.root / CACHE_LAYOUT_VERSION / folder / key[:2] / f"{key}.npy"

    def is_valid(self, kind: str, key: str) -> bool:
        """Whether an entry exists and its file is complete (a truncated file is a miss).

        Reads the ``.npy`` header only: the file is complete when it holds the header's array
        (what a memory map of it needs), for a third of the cost of mapping it (4 checks per sample).
        """
        try:
            with open(self.path(kind, key), "rb") as file:
                read_header = _NPY_HEADER_READERS.get(np.lib.format.read_magic(file))
                if read_header is None:  # np.save writes 1.0 (2.0 for huge headers): not ours
                    return False
                shape, _, dtype = read_header(file)
                needed = file.tell() + math.prod(shape) * dtype.itemsize
                return not dtype.hasobject and os.fstat(file.fileno()).st_size >= needed
        except (ValueError, OSError, EOFError, SyntaxError):
            return False

    def missing_kinds(self, record: CacheRecord) -> list[str]:
        return [kind for kind in self.kinds if not self.is_valid(kind, record.keys[kind])]

    # ------------------------------------------------------------------ read / write

    def write(self, kind: str, key: str, array: np.ndarray) -> None:
        """Store ``array`` under ``key`` atomically (temp file + rename)."""
        contiguous = np.ascontiguousarray(array)
        atomic_write(self.path(kind, key), lambda file: np.save(file, contiguous, allow_pickle=False))

    def _read(self, kind: str, key: str) -> np.ndarray:
        path = self.path(kind, key)
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as error:
            raise OdsSamError(f"{path}: embedding cache entry is missing or corrupt: {error}") from error

    def write_entry(self, kind: str, key: str, array: torch.Tensor) -> None:
        """Store one encoder output: ``prompt`` (3xPxP) or an embedding part (256xhxw); thread-safe."""
        if kind == "prompt":
            self.write_prompt(key, array)
        else:  # every embedding part is stored like the first (its key tells them apart)
            self.write_embedding(key, array)

    def write_embedding(self, key: str, embedding: torch.Tensor) -> None:
        """embedding: 256xhxw, any float dtype; stored in the cache dtype."""
        stored = embedding.detach().to("cpu", self.torch_dtype).contiguous()
        bits = stored.view(torch.int16) if self.torch_dtype is torch.bfloat16 else stored
        self.write("embedding", key, bits.numpy().view(self.numpy_dtype))

    def read_embedding(self, key: str) -> torch.Tensor:
        """-> 256xhxw tensor in the cache dtype (bf16 or fp16)."""
        array = np.array(self._read("embedding", key))
        tensor = torch.from_numpy(array.view(np.int16) if self.torch_dtype is torch.bfloat16 else array)
        return tensor.view(self.torch_dtype)

    def read_embedding_parts(self, record: CacheRecord) -> dict[str, torch.Tensor]:
        """Kind (``embedding``, ``embedding.1`` ...) -> that part of ``record``'s embedding."""
        return {kind: self.read_embedding(record.keys[kind]) for kind in self.params.embedding_kinds}

    def write_prompt(self, key: str, prompt_input: torch.Tensor) -> None:
        self.write("prompt", key, prompt_input.detach().to("cpu", torch.float16).numpy())

    def read_prompt(self, key: str) -> torch.Tensor:
        """-> 3xPxP fp16 tensor."""
        return torch.from_numpy(np.array(self._read("prompt", key)))

    def write_target(self, key: str, target: torch.Tensor) -> None:
        self.write("target", key, (target.detach().cpu() > 0.5).to(torch.uint8).numpy())

    def read_target(self, key: str) -> torch.Tensor:
        """-> 1xTxT float32 tensor of 0/1."""
        return torch.from_numpy(np.array(self._read("target", key))).float()

    def write_mask(self, key: str, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        header = np.array(mask.shape, dtype=np.uint32).view(np.uint8)
        self.write("mask", key, np.concatenate([header, np.packbits(mask.ravel())]))

    def read_mask(self, key: str) -> np.ndarray:
        """-> HxW bool array."""
        packed = np.array(self._read("mask", key))
        height, width = packed[:8].view(np.uint32)
        return np.unpackbits(packed[8:], count=int(height) * int(width)).reshape(height, width).astype(bool)


# --------------------------------------------------------------------------- building


class _IndexedSamples(Dataset):
    """``(index, sample)`` pairs of a dataset (the index survives a Subset)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index]


class _KeyAndStage:
    """DataLoader collate run in the workers: hash each sample, stage the misses' images.

    Hashing (and, for CPU inference, preprocessing) happen here, in parallel workers; for a
    GPU the resize runs there (:mod:`odssam.inference.batch`, the path of prediction).
    """

    def __init__(self, cache: EmbeddingCache, device: torch.device):
        self.cache = cache
        self.device = device

    def __call__(self, batch):
        params = self.cache.params
        items, to_encode, to_prompt = [], [], []
        for index, sample in batch:
            record = self.cache.record_for(sample.image, sample.mask, sample.name)
            missing = self.cache.missing_kinds(record)
            if "target" in missing:
                target = masks_to_targets([sample.mask], [record.input_size], params.image_size, params.target_size)
                self.cache.write_target(record.keys["target"], target[0])
            if "mask" in missing:
                self.cache.write_mask(record.keys["mask"], sample.mask)
            needs_input = "prompt" in missing or any(kind in missing for kind in params.embedding_kinds)
            items.append((index, record, missing))
            if needs_input:
                to_encode.append(sample.image)
                to_prompt.append(len(items) - 1)
        # Pinned later, by the DataLoader in the main process: a worker's pinned memory would not reach it.
        staged = [stage_image(image, params.preprocess_spec, self.device, pin=False) for image in to_encode]
        return HostBatch((items, to_prompt), staged)


@dataclass
class _EncodedBatch:
    """One batch's encoder outputs in their stored dtypes, on their way to the host.

    Attributes:
        items: ``(index, record, missing kinds)`` of every sample of the batch.
        rows: Position in ``items`` of each encoded image (row ``r`` of the tensors).
        outputs: Kind (``embedding``, ``embedding.1`` ..., ``prompt``) -> host tensor, e.g.
            Bx256x64x64 bf16 and Bx3xPxP fp16 (being copied into page-locked memory on CUDA).
        copied: Event recorded after the copies (CUDA), or ``None``.
    """

    items: list[tuple[int, CacheRecord, list[str]]]
    rows: list[int] = field(default_factory=list)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    copied: torch.cuda.Event | None = None

    def entries(self) -> list[tuple[str, str, torch.Tensor]]:
        """Wait for the copies; -> ``(kind, key, array)`` of every missing entry, e.g. 256x64x64."""
        if self.copied is not None:
            self.copied.synchronize()
        entries = []
        for row, position in enumerate(self.rows):
            _, record, missing = self.items[position]
            entries += [(kind, record.keys[kind], output[row]) for kind, output in self.outputs.items() if kind in missing]
        return entries


def _encode(inference: BatchInference, cache: EmbeddingCache, batch: HostBatch, copy_async: bool) -> _EncodedBatch:
    """Queue a staged batch's encoder and prompt input on the device; copies to the host wait only if not ``copy_async``."""
    items, rows = batch.payload
    if not batch.images:
        return _EncodedBatch(items)
    params = cache.params
    x = inference.prepare(batch.images, params.preprocess_spec).x
    on_device = {kind: part.to(cache.torch_dtype) for kind, part in zip(params.embedding_kinds, inference.encode(x))}
    on_device["prompt"] = prompt_input_from(x, params.prompt_input_size).to(torch.float16)
    copy_async = copy_async and x.device.type == "cuda"
    # One device-to-host copy per kind and batch, in the stored dtypes (into page-locked memory when async).
    outputs = {kind: output.to("cpu", non_blocking=copy_async) for kind, output in on_device.items()}
    copied = None
    if copy_async:
        copied = torch.cuda.Event()
        copied.record(torch.cuda.current_stream(x.device))
    return _EncodedBatch(items, rows, outputs, copied)


def _encoded_batches(
    loader, inference: BatchInference, cache: EmbeddingCache, pipelined: bool
) -> Iterator[tuple[HostBatch, list[tuple[str, str, torch.Tensor]]]]:
    """``(batch, entries to write)`` per loader batch; pipelined, the next batch's encoder is queued first."""
    if pipelined:
        yield from one_in_flight(loader, lambda batch: _encode(inference, cache, batch, True), _EncodedBatch.entries)
    else:  # the plain reference: encode, copy, hand over, one batch at a time
        for batch in loader:
            yield batch, _encode(inference, cache, batch, False).entries()


def build_embedding_cache(
    model,
    dataset: Dataset,
    cache: EmbeddingCache,
    info: DistInfo | None = None,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
    description: str = "cache",
    pipelined: bool = True,
    write_threads: int | None = None,
    cuda_graph: bool = True,
) -> tuple[list[CacheRecord], CacheStats]:
    """Make sure every sample of ``dataset`` is in the cache; return its records.

    With several processes each rank handles every ``world_size``-th sample (the SAM
    encoder runs in parallel on all GPUs); the records are then gathered so every rank
    returns the full list, in dataset order.

    Args:
        model: :class:`~odssam.models.ods_sam.OdsSam` (only its frozen encoder runs).
        dataset: Dataset of :class:`~odssam.data.sample.Sample`.
        cache: The cache to fill.
        info: Process-group info (``None``: single process on the model's device).
        batch_size: Images per encoder call.
        num_workers: DataLoader workers that decode, hash and resize images.
        autocast_dtype: e.g. ``torch.bfloat16`` to run the encoder under autocast.
        progress: Show a progress bar (rank 0 only).
        description: Progress-bar label.
        pipelined: Keep one batch in flight (the next batch's encoder is queued before this
            one's entries are handed over, copies to the host do not wait) and write entries
            from ``write_threads`` threads; ``False``: the plain sequential path (encode, copy,
            write, one batch at a time), which writes the same files.
        write_threads: Threads writing entries when pipelined (0: inline; default: one per
            core, at most 8: a slow shared filesystem needs several writes at once).
        cuda_graph: On a GPU, record the encoder once as a CUDA graph for the full batch and
            replay it (:class:`~odssam.inference.graphed_forward.GraphedForward`; the same
            embeddings); ``False``: the eager encoder.

    Returns:
        ``(records, stats)``: one :class:`CacheRecord` per sample and the summed statistics.
    """
    info = info or DistInfo(device=next(model.parameters()).device)
    start = time.perf_counter()
    shard = Subset(_IndexedSamples(dataset), list(range(info.rank, len(dataset), info.world_size)))
    inference = BatchInference(model, info.device, autocast_dtype, cuda_graph=cuda_graph)
    loader = DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_KeyAndStage(cache, inference.device),
        pin_memory=inference.device.type == "cuda",
    )
    if progress and info.is_main:
        loader = progress_bar(loader, desc=description, total=len(loader))
    loader = eta_after_first_batch(loader, model, total_images=len(shard), images_in=lambda b: len(b.images), announce=False)
    records: dict[int, CacheRecord] = {}
    kinds = cache.params.embedding_kinds + KINDS[1:]
    misses = {kind: 0 for kind in kinds}
    # Writes of a few batches may wait (~2 MB per ViT-H embedding); beyond that the encoder waits for the disk.
    threads = default_write_threads() if write_threads is None else write_threads
    writers = WritePool(threads if pipelined else 0, max_pending=8 * batch_size, name="odssam-cache-write")
    with writers:
        for batch, entries in _encoded_batches(loader, inference, cache, pipelined):
            for kind, key, array in entries:
                writers.submit(cache.write_entry, kind, key, array)
            for index, record, missing in batch.payload[0]:
                records[index] = record
                for kind in missing:
                    misses[kind] += 1
    counts = torch.tensor([len(records)] + [misses[kind] for kind in kinds], dtype=torch.float64)
    gathered = all_gather_objects(records, info)
    summed = counts if not info.is_distributed else _sum_over_ranks(counts, info)
    barrier(info)
    merged: dict[int, CacheRecord] = {}
    for part in gathered:
        merged.update(part)
    if len(merged) != len(dataset):
        raise RuntimeError(f"cache build covered {len(merged)} of {len(dataset)} samples")
    images = int(summed[0])
    kind_misses = {kind: int(value) for kind, value in zip(kinds, summed[1:].tolist())}
    stats = CacheStats(
        images=images,
        embedding_hits=images - kind_misses["embedding"],
        embedding_misses=kind_misses["embedding"],
        seconds=time.perf_counter() - start,
        per_kind_misses=kind_misses,
    )
    return [merged[i] for i in range(len(dataset))], stats


def _sum_over_ranks(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    from odssam.engine.distributed import all_reduce_sum

    return all_reduce_sum(values, info).cpu()


# --------------------------------------------------------------------------- reading


class CachedTrainingSet(Dataset):
    """Training items read from the cache: what one step needs, nothing decoded.

    Each item is a dict with ``prompt_input`` 3xPxP fp16, ``embedding`` 256xhxw (cache
    dtype) and ``target`` 1xTxT float32; for a label-resolution loss (``target_size``
    ``None``) the target is the mask, 1xHxW, with ``input_size`` and ``label_size`` (see
    :func:`odssam.engine.targets.label_target`). Batch with
    :func:`odssam.engine.targets.collate_training_items`.
    """

    def __init__(self, cache: EmbeddingCache, records: Sequence[CacheRecord]):
        self.cache = cache
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        keys = record.keys
        if self.cache.params.target_size is None:
            target = label_target(self.cache.read_mask(keys["mask"]), record.input_size)
        else:
            target = {"target": self.cache.read_target(keys["target"])}
        return {
            "prompt_input": self.cache.read_prompt(keys["prompt"]),
            **self.cache.read_embedding_parts(record),
            **target,
        }


class CachedEvaluationSet(Dataset):
    """Evaluation items read from the cache: model inputs plus the full-size ground truth.

    Each item is a dict with ``prompt_input``, ``embedding``, ``mask`` (HxW bool numpy),
    ``input_size``, ``image_shape`` and ``name``; batch it with :func:`collate_cached_eval`.
    """

    def __init__(self, cache: EmbeddingCache, records: Sequence[CacheRecord]):
        self.cache = cache
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        return {
            "prompt_input": self.cache.read_prompt(record.keys["prompt"]),
            **self.cache.read_embedding_parts(record),
            "mask": self.cache.read_mask(record.keys["mask"]),
            "input_size": record.input_size,
            "image_shape": record.image_shape,
            "name": record.name,
        }


def collate_cached_eval(items: list[dict]) -> dict:
    """Stack the tensors of :class:`CachedEvaluationSet` items; keep the rest as lists."""
    stacked = [key for key in items[0] if key == "prompt_input" or key.startswith("embedding")]
    return {
        **{key: torch.stack([item[key] for item in items]) for key in stacked},
        "masks": [item["mask"] for item in items],
        "input_sizes": [item["input_size"] for item in items],
        "image_shapes": [item["image_shape"] for item in items],
        "names": [item["name"] for item in items],
    }
