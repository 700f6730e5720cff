"""odssam: ODS-SAM (IJCAI 2025) pixel-level anomaly segmentation with a frozen SAM.

The image goes through SAM's frozen image encoder and, in parallel, through a learned
prompt encoder (EfficientViT feature encoder + SSMODC) whose dense prompt drives SAM's
frozen mask decoder.

Prediction from Python::

    import odssam

    model = odssam.load("runs/demo/last.pt")   # a checkpoint written by ``odssam train`` or ``odssam demo``
    result = model.predict("image.png")         # or a numpy array / PIL image
    result.mask, result.probability, result.score
"""

__version__ = "0.1.0"

from odssam.errors import OdsSamError  # noqa: E402

__all__ = ["OdsSamError", "Predictor", "Prediction", "__version__", "load"]


def __getattr__(name: str):
    # Imported on first use, so ``import odssam`` (and the CLI's start-up) stays light.
    if name == "load":
        from odssam.api import load

        return load
    if name in ("Predictor", "Prediction"):
        from odssam.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'odssam' has no attribute {name!r}")
