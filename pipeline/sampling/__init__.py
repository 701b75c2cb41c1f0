"""From labelled pixels to training data: k x k patches streamed to a memory-mapped store
(:func:`extract_patches`, :func:`open_patches`), the per-pixel features of the classical models
(:class:`FeatureSpec`), and the per-class cap of dense labels drawn after the split
(:func:`apply_sampling`)."""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "FeatureConfig",
    "FeatureSpec",
    "PatchConfig",
    "PatchStore",
    "SamplingConfig",
    "apply_sampling",
    "extract_patches",
    "open_patches",
]
#: name -> module of this package that defines it (imported on first use)
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "FeatureConfig": "settings",
        "FeatureSpec": "features",
        "PatchConfig": "settings",
        "PatchStore": "patches",
        "SamplingConfig": "settings",
        "apply_sampling": "dense",
        "extract_patches": "patches",
        "open_patches": "patches",
    },
)
