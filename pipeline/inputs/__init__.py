"""The run's inputs: rasters read window by window (:class:`RasterStack`), labels turned into
labelled pixels on the image grid (:func:`ingest_labels`, one module per kind of label source),
the scenes of a run (:func:`resolve_scenes`), the class table of a class map
(:class:`ClassTable`) and the value range a model was trained on (:func:`training_value_range`)."""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "LABEL_SOURCES",
    "ClassSpec",
    "ClassTable",
    "EmptyBandsError",
    "LabelConfig",
    "LabelReport",
    "LabelSource",
    "RasterConfig",
    "RasterStack",
    "Scene",
    "check_scenes",
    "ingest_labels",
    "open_scene",
    "resolve_scenes",
    "training_value_range",
    "value_range_problem",
]
#: name -> module of this package that defines it (imported on first use)
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LABEL_SOURCES": "labels",
        "ClassSpec": "settings",
        "ClassTable": "class_table",
        "EmptyBandsError": "labels",
        "LabelConfig": "settings",
        "LabelReport": "label_source",
        "LabelSource": "label_source",
        "RasterConfig": "settings",
        "RasterStack": "raster",
        "Scene": "scenes",
        "check_scenes": "scenes",
        "ingest_labels": "labels",
        "open_scene": "scenes",
        "resolve_scenes": "scenes",
        "training_value_range": "value_range",
        "value_range_problem": "value_range",
    },
)
