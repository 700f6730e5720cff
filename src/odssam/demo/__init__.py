"""The ``odssam demo``: synthetic anomaly data, a short CPU training run, evaluation and figures.

::

    from odssam.demo import DemoOptions, run_demo

    result = run_demo(DemoOptions(output="odssam-demo"))
    result.metrics["dice@0.5"], result.files["figure_grid"]
"""

from odssam.demo.run import DemoOptions, DemoResult, run_demo
from odssam.demo.synthetic import DEFECTS, TEXTURES, SyntheticDataset, generate_dataset, render_surface

__all__ = [
    "DEFECTS",
    "TEXTURES",
    "DemoOptions",
    "DemoResult",
    "SyntheticDataset",
    "generate_dataset",
    "render_surface",
    "run_demo",
]
