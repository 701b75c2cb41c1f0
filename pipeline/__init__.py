"""landcover-pipeline: land-cover maps from multispectral rasters with spatially honest accuracy."""

__version__ = "0.1.0"
