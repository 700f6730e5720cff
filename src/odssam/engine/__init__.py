"""Training and evaluation engine: the loop, the embedding cache, DDP helpers.

Checkpoints live in :mod:`odssam.checkpoint` (below both the engine and inference); their
loaders are re-exported here.

Public entry points::

    from odssam.engine import train, load_model_from_checkpoint
    result = train(cfg)                                   # writes a run folder
    model, cfg = load_model_from_checkpoint("runs/kvasir/last.pt", device="cuda")
"""

from odssam.checkpoint import load_checkpoint, load_model_from_checkpoint, save_checkpoint

__all__ = ["load_checkpoint", "load_model_from_checkpoint", "save_checkpoint", "train", "TrainResult"]


def __getattr__(name: str):
    # The trainer imports the data and metrics packages: load it only when asked for.
    if name in ("train", "TrainResult"):
        from odssam.engine import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'odssam.engine' has no attribute {name!r}")
