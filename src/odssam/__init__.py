"""odssam: ODS-SAM (IJCAI 2025) pixel-level anomaly segmentation with a frozen SAM.

The image goes through SAM's frozen image encoder and, in parallel, through a learned
prompt encoder (EfficientViT feature encoder + SSMODC) whose dense prompt drives SAM's
frozen mask decoder.
"""

__version__ = "0.1.0"

from odssam.errors import OdsSamError  # noqa: E402

__all__ = ["OdsSamError", "__version__"]
