"""Full-scene mapping: a model classifies a raster window by window, locally or on a Dask
cluster (:func:`classify_raster`, :mod:`pipeline.mapping.classify`), into a COG class map written
whole or not at all, with its class names, colours and GIS sidecars (:func:`write_class_map`,
:mod:`pipeline.mapping.class_maps`)."""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "MappingConfig",
    "classify_raster",
    "dask_client_here",
    "open_for_model",
    "verify_raster",
    "write_class_map",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MappingConfig": "settings",
        "classify_raster": "classify",
        "dask_client_here": "classify",
        "open_for_model": "classify",
        "verify_raster": "class_maps",
        "write_class_map": "class_maps",
    },
)
