"""Deployment: ONNX export of a trained model and a PyTorch-free runtime for the graphs.

::

    from odssam.export import export_onnx, OnnxPredictor

    result = export_onnx(model, "exported/")        # two graphs + metadata + parity check
    result.parity.max_abs_diff_logits
    OnnxPredictor("exported/").predict("image.png")  # onnxruntime + NumPy + Pillow only

Names resolve lazily, so ``odssam.export.runtime`` never imports PyTorch.
"""

from __future__ import annotations

_EXPORTS = {
    "ExportResult": "odssam.export.onnx_export",
    "ParityReport": "odssam.export.onnx_export",
    "check_parity": "odssam.export.onnx_export",
    "export_onnx": "odssam.export.onnx_export",
    "OnnxPrediction": "odssam.export.runtime",
    "OnnxPredictor": "odssam.export.runtime",
    "create_session": "odssam.export.runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'odssam.export' has no attribute {name!r}")
