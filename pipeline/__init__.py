"""landcover-pipeline: land-cover maps from multispectral rasters with spatially honest accuracy."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["LandcoverClassifier", "SpatialBlockSplit", "__version__", "classify_raster", "read_metrics", "run_config"]

# The public API (the scikit-learn interfaces, running a config, mapping), imported on first use:
# ``import pipeline`` (every CLI start) must not import scikit-learn, pydantic or geopandas.
_LAZY = {
    "LandcoverClassifier": "pipeline.models.estimator",  # classifier over any registered model
    "SpatialBlockSplit": "pipeline.split.splitter",  # spatial cross-validation splitter
    "run_config": "pipeline.api",  # run a config in process (= landcover run --engine local)
    "read_metrics": "pipeline.api",  # metrics.json of a run directory
    "classify_raster": "pipeline.mapping.classify",  # a model's class map of a raster, window by window
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
