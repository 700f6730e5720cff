"""Data-parallel training throughput: N processes (torchrun, DDP) against one, same per-process batch.

Runs ``odssam train`` twice on the same data: once in one process with batch B, once with
``torch.distributed.run`` on N processes with global batch N*B (so every process does the
same work per step). Prints the training images/s of each (epochs after the first, which
also builds the embedding cache) and their ratio; the issue's target is >= 1.8x on 2 GPUs.

    python benchmarks/bench_ddp.py --data-root Kvasir-SEG --config configs/kvasir.yaml   # GPUs
    python benchmarks/bench_ddp.py                     # CPU: tiny config, generated data, gloo

With CUDA each process gets one GPU (NCCL); on the CPU the processes share the cores, so the
CPU ratio only shows that the path works.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from odssam.demo.synthetic import render_surface

ROOT = Path(__file__).resolve().parents[1]


def generate_folder_dataset(root: Path, count: int, size: int = 128) -> Path:
    """A flat ``images/`` + ``masks/`` folder of synthetic defects."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(count):
        image, mask, _ = render_surface(rng, size, size)
        Image.fromarray(image).save(root / "images" / f"{index:04d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{index:04d}.png")
    return root


def train_throughput(command: list[str], run_dir: Path, env: dict[str, str]) -> list[float]:
    """Run one training command; images/s of each epoch from its metrics.jsonl."""
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"training failed with exit status {done.returncode}")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["images_per_second"] for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "tiny.yaml"))
    parser.add_argument("--data-root", default=None, help="dataset folder (default: generated)")
    parser.add_argument("--processes", type=int, default=None, help="default: the visible GPUs, 2 on the CPU")
    parser.add_argument("--batch-per-process", type=int, default=None, help="default: 10 on GPUs, 2 on the CPU")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    processes = args.processes or (torch.cuda.device_count() if cuda else 2)
    batch = args.batch_per_process or (10 if cuda else 2)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_ddp_"))
    data_root = args.data_root or str(generate_folder_dataset(out / "data", count=12 * batch * processes))
    common = ["--config", args.config, "--no-progress"]
    for item in [
        f"data.root={data_root}",
        f"train.epochs={args.epochs}",
        f"train.output_dir={out / 'runs'}",
        "train.final_eval=false",
        "model.sam.checkpoint=null",
        *args.set,
    ]:
        common += ["--set", item]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))

    single_env = dict(env, CUDA_VISIBLE_DEVICES="0") if cuda else env
    one_process = [sys.executable, "-m", "odssam", "train", *common, "--set", f"train.batch_size={batch}"]
    # All runs share one embedding cache: only the first builds it, and only epochs after
    # the first are compared.
    cache = ["--set", f"train.cache_dir={out / 'cache'}"]
    single = train_throughput(
        [*one_process, *cache, "--set", "train.run_name=one_process"], out / "runs" / "one_process", single_env
    )
    single_eager = None
    if cuda:  # DDP steps run eagerly; the one-process default replays a CUDA graph
        single_eager = train_throughput(
            [*one_process, *cache, "--set", "train.run_name=one_process_eager", "--set", "train.cuda_graph=false"],
            out / "runs" / "one_process_eager",
            single_env,
        )
    multi = train_throughput(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
         "-m", "odssam", "train", *common, *cache, "--set", f"train.run_name={processes}_processes",
         "--set", f"train.batch_size={batch * processes}"],
        out / "runs" / f"{processes}_processes",
        env,
    )

    def steady(values: list[float]) -> float:  # the first epoch also warms up
        return statistics.mean(values[1:] or values)

    def epochs(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    one, many = steady(single), steady(multi)
    device = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"device: {device} x{processes if cuda else 1}; torch {torch.__version__}; batch {batch} per process")
    print(f"one process (default):  {one:8.1f} images/s  (epochs: {epochs(single)})")
    if single_eager is not None:
        print(f"one process (eager):    {steady(single_eager):8.1f} images/s  (epochs: {epochs(single_eager)})")
    print(f"{processes} processes (DDP):    {many:8.1f} images/s  (epochs: {epochs(multi)})")
    print(f"ratio: {many / one:.2f}x against the default one-process run", end="")
    print(f", {many / steady(single_eager):.2f}x against the eager one" if single_eager is not None else "")

if __name__ == "__main__":
    main()
