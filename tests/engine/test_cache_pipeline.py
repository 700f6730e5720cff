"""The pipelined cache build writes the very files of the sequential one, and loses no write or error."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cache import params_for, train_set  # noqa: F401 (a fixture)

from odssam.engine.cache import CacheParams, EmbeddingCache, build_embedding_cache, prompt_input_from
from odssam.errors import OdsSamError
from odssam.models.loss import masks_to_targets
from odssam.models.transforms import sam_preprocess


def reference_build(model, dataset, cache: EmbeddingCache, batch_size: int) -> None:
    """The cache written by plain code: each batch preprocessed, encoded and written in turn, in this thread."""
    params = cache.params
    for begin in range(0, len(dataset), batch_size):
        samples = [dataset[index] for index in range(begin, min(begin + batch_size, len(dataset)))]
        records = [cache.record_for(sample.image, sample.mask, sample.name) for sample in samples]
        x, input_sizes, _ = sam_preprocess([sample.image for sample in samples], params.preprocess_spec)
        with torch.no_grad():
            embedding = model.encode(x)[0]
        prompt_inputs = prompt_input_from(x, params.prompt_input_size)
        for row, (sample, record) in enumerate(zip(samples, records)):
            cache.write_embedding(record.keys["embedding"], embedding[row])
            cache.write_prompt(record.keys["prompt"], prompt_inputs[row])
            cache.write_mask(record.keys["mask"], sample.mask)
            if params.target_size is not None:
                target = masks_to_targets([sample.mask], [input_sizes[row]], params.image_size, params.target_size)
                cache.write_target(record.keys["target"], target[0])


def cache_files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(
    "changes, batch_size, write_threads",
    [({}, 4, 3), ({"target_size": None, "dtype": "float16"}, 5, 1), ({}, 2, 0)],
    ids=["bf16-logit-targets", "fp16-label-targets", "inline-writes"],
)
def test_pipelined_build_writes_the_files_of_the_sequential_build(
    tiny_model, train_set, tmp_path, changes, batch_size, write_threads
):
    params = params_for(tiny_model, **changes)
    runs = {}
    for pipelined in (False, True):
        root = tmp_path / ("pipelined" if pipelined else "sequential")
        records, stats = build_embedding_cache(
            tiny_model, train_set, EmbeddingCache(root, params),
            batch_size=batch_size, pipelined=pipelined, write_threads=write_threads,
        )
        runs[pipelined] = (records, stats, cache_files(root))  # read at once: every write is done on return
    reference_build(tiny_model, train_set, EmbeddingCache(tmp_path / "reference", params), batch_size)
    files = cache_files(tmp_path / "reference")
    assert len(files) == len(EmbeddingCache(tmp_path, params).kinds) * len(train_set)
    (records, stats, sequential_files), (fast_records, fast_stats, fast_files) = runs[False], runs[True]
    assert fast_records == records
    assert dataclasses.replace(fast_stats, seconds=0) == dataclasses.replace(stats, seconds=0)
    for built in (sequential_files, fast_files):
        assert built.keys() == files.keys()
        changed = [name for name in files if built[name] != files[name]]
        assert not changed, changed


def test_second_pipelined_build_writes_nothing(tiny_model, train_set, tmp_path):
    cache = EmbeddingCache(tmp_path, params_for(tiny_model))
    build_embedding_cache(tiny_model, train_set, cache, batch_size=4)
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.npy")}
    _, stats = build_embedding_cache(tiny_model, train_set, cache, batch_size=4)
    assert stats.embedding_hits == len(train_set) and sum(stats.per_kind_misses.values()) == 0
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*.npy")} == before


class FailingCache(EmbeddingCache):
    """Refuses to write one prompt entry, from whichever thread writes it."""

    def __init__(self, root, params, failing_write: int):
        super().__init__(root, params)
        self.failing_write = failing_write
        self.writes = 0
        self.threads = set()
        self.lock = threading.Lock()

    def write_entry(self, kind, key, array):
        with self.lock:
            self.writes += 1
            number = self.writes
            self.threads.add(threading.current_thread().name)
        if number == self.failing_write:
            raise OdsSamError(f"cannot write {self.path(kind, key)}: No space left on device")
        super().write_entry(kind, key, array)


@pytest.mark.parametrize("failing_write", [1, 12])
def test_a_failed_entry_write_is_raised_by_the_build(tiny_model, train_set, tmp_path, failing_write):
    cache = FailingCache(tmp_path, params_for(tiny_model), failing_write)
    with pytest.raises(OdsSamError, match="No space left on device"):
        build_embedding_cache(tiny_model, train_set, cache, batch_size=2, write_threads=2)
    assert all(name.startswith("odssam-cache-write") for name in cache.threads)
    assert not [path for path in tmp_path.rglob("*.tmp")]  # atomic writes left no temporary file


def test_entries_are_written_by_the_pool_threads(tiny_model, train_set, tmp_path):
    cache = FailingCache(tmp_path, params_for(tiny_model), failing_write=-1)
    build_embedding_cache(tiny_model, train_set, cache, batch_size=3, write_threads=2)
    assert cache.writes == 2 * len(train_set)  # embedding and prompt of every image
    assert cache.threads and all(name.startswith("odssam-cache-write") for name in cache.threads)
    assert torch.is_tensor(cache.read_embedding(build_embedding_cache(tiny_model, train_set, cache)[0][0].keys["embedding"]))


def mapped_entry_is_valid(path: Path) -> bool:
    """The check the header read replaced: the entry opens as a memory map."""
    if not path.is_file():
        return False
    try:
        np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return False
    return True


def test_header_check_agrees_with_mapping_the_file(tmp_path):
    cache = EmbeddingCache(tmp_path, CacheParams("sam", 64, 32, 16))
    cache.write_embedding("aa" * 32, torch.randn(256, 4, 4))
    complete = cache.path("embedding", "aa" * 32).read_bytes()
    header_length = len(complete) - 256 * 4 * 4 * 2
    variants = {
        "complete": complete,
        "longer": complete + b"\0" * 7,
        "one byte short": complete[:-1],
        "header only": complete[:header_length],
        "cut in the header": complete[:40],
        "magic only": complete[:8],
        "empty": b"",
        "not npy": b"PNG\r\n" + complete[5:],
        "unknown version": complete[:6] + b"\x07\x00" + complete[8:],
        "object dtype": complete.replace(b"'descr': '<u2'", b"'descr': '|O' ", 1),
        "broken header": complete.replace(b"'shape'", b"'shap\xff'", 1),
    }
    valid = {}
    for number, (name, content) in enumerate(variants.items()):
        assert name == "complete" or content != complete, name
        key = f"{number:02x}" * 32
        path = cache.path("embedding", key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        valid[name] = cache.is_valid("embedding", key)
        assert valid[name] == mapped_entry_is_valid(path), name
    assert [name for name, ok in valid.items() if ok] == ["complete", "longer"]
    assert cache.is_valid("embedding", "aa" * 32)
    assert not cache.is_valid("embedding", "bb" * 32)  # missing
    assert not cache.is_valid("prompt", "aa" * 32)
