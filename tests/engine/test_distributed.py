"""Two gloo processes on the CPU train like one DistributedDataParallel job."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.multiprocessing as mp
from helpers import free_port

from odssam.config import ExperimentConfig, from_dict, to_dict, with_overrides


def train_on_rank(rank: int, world_size: int, port: int, config: dict, out_dir: str) -> None:
    """One torchrun-like worker: the environment torchrun would set, then the normal entry point."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    torch.set_num_threads(1)
    from odssam.engine.trainer import train

    result = train(from_dict(ExperimentConfig, config), device="cpu", progress=False)
    state = {key: value.clone() for key, value in result.model.prompt_encoder.state_dict().items()}
    torch.save({"state": state, "steps": result.steps, "epochs": result.epochs}, Path(out_dir) / f"rank{rank}.pt")


def test_two_gloo_processes_end_with_identical_state(tiny_config, tiny_model, tmp_path):
    # final_eval off: keep the weights as training left them on each rank
    tiny_config = with_overrides(tiny_config, {"train.epochs": 1, "train.final_eval": False})
    # spawn, as torchrun starts fresh processes: a fork after this process ran autograd
    # (its worker threads exist once any backward ran, e.g. on a GPU machine) is refused.
    mp.start_processes(
        train_on_rank, args=(2, free_port(), to_dict(tiny_config), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # 6 training images, global batch 2 -> 1 image per process and step, 3 steps.
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3
    initial = tiny_model.prompt_encoder.state_dict()
    changed = 0
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
        changed += int(value.is_floating_point() and not torch.equal(value, initial[key]))
    assert changed > 0  # the weights did train
    run_dir = Path(tiny_config.train.output_dir) / tiny_config.name
    cache_report = (run_dir / "cache.json").read_text()
    assert '"images": 6' in cache_report and '"embedding_misses": 6' in cache_report
