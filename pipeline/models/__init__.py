"""Models: build one by name, load a saved one from its file.

The table of models, and the extension point, is :mod:`pipeline.models.registry` (its
docstring says how to add a model); :func:`build_model` and :func:`load_model` read it. What a
model is: :mod:`pipeline.models.base`. The families: :mod:`~pipeline.models.classical` (the
scikit-learn base and its skops files), :mod:`~pipeline.models.trees`,
:mod:`~pipeline.models.svm`, :mod:`~pipeline.models.max_likelihood` and
:mod:`~pipeline.models.deep` (patch networks; :mod:`~pipeline.models.nets`,
:mod:`~pipeline.models.training`). Every name here is imported on first use, so importing a
module of this package imports neither scikit-learn nor torch.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.lazy import lazy_exports

# `registry` is the module itself (`from pipeline.models import registry` imports it).
__all__ = [
    "Classifier",
    "ModelMeta",
    "ModelSpec",
    "TrainingData",
    "build_model",
    "load_model",
    "model_class",
    "model_suffix",
    "registry",
]
_exported, __dir__ = lazy_exports(
    __name__,
    {
        "Classifier": "base",
        "ModelMeta": "base",
        "TrainingData": "base",
        "ModelSpec": "registry",
        "build_model": "registry",
        "load_model": "registry",
        "model_class": "registry",
        "model_suffix": "registry",
    },
)


def __getattr__(name: str) -> Any:
    if name == "MODEL_SUFFIX":  # kept for callers of the old table; derived from the registry
        from pipeline.models.registry import specs

        return {s.name: s.suffix for s in specs()}
    return _exported(name)
