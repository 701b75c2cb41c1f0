"""landcover-pipeline: land-cover maps from multispectral rasters with spatially honest accuracy."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["LandcoverClassifier", "SpatialBlockSplit", "__version__", "read_metrics", "run_config"]

# The scikit-learn interfaces, imported on first use: ``import pipeline`` (every CLI start)
# must not import scikit-learn, pydantic or geopandas.
_LAZY = {
    "LandcoverClassifier": "pipeline.models.estimator",  # classifier over any registered model
    "SpatialBlockSplit": "pipeline.split.splitter",  # spatial cross-validation splitter
    "run_config": "pipeline.api",  # run a config in process (= landcover run --engine local)
    "read_metrics": "pipeline.api",  # metrics.json of a run directory
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
