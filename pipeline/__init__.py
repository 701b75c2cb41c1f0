"""landcover-pipeline: land-cover maps from multispectral rasters with spatially honest accuracy."""

__version__ = "0.1.0"

from pipeline.splitter import SpatialBlockSplit  # noqa: E402  (scikit-learn compatible spatial CV splitter)

__all__ = ["SpatialBlockSplit", "__version__"]
