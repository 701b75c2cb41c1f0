"""Full-scene mapping: a model classifies a raster window by window, locally or on a Dask
cluster (:func:`classify_raster`, :mod:`pipeline.mapping.classify`), into a COG class map written
whole or not at all, with its class names, colours, GIS sidecars and legend (:func:`write_class_map`,
:mod:`pipeline.mapping.class_maps`, :mod:`pipeline.mapping.legends`), delivered with a minimum mapping
unit and polygons (:func:`deliver_map`, :mod:`pipeline.mapping.mmu`, :mod:`pipeline.mapping.polygons`)
and described by STAC Items (:func:`map_item`, :mod:`pipeline.mapping.stac`); its inputs opened as the
model was trained (bands, grid, nodata: :func:`open_for_model`, :mod:`pipeline.mapping.model_inputs`)."""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "MappingConfig",
    "MinimumMappingUnit",
    "OutputsConfig",
    "deliver_map",
    "map_item",
    "sieve_class_map",
    "validate_item",
    "write_polygons",
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
        "MinimumMappingUnit": "settings",
        "OutputsConfig": "settings",
        "deliver_map": "deliver",
        "map_item": "stac",
        "sieve_class_map": "mmu",
        "validate_item": "stac",
        "write_polygons": "polygons",
        "classify_raster": "classify",
        "dask_client_here": "classify",
        "open_for_model": "model_inputs",
        "verify_raster": "class_maps",
        "write_class_map": "class_maps",
    },
)
