"""Models: build one by name, load a saved one from its file. The table is :mod:`pipeline.models.registry`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.errors import InputError
from pipeline.models import registry
from pipeline.models.base import Classifier, ModelMeta, TrainingData
from pipeline.models.registry import ModelSpec, model_class, model_suffix

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


def build_model(name: str, settings: Any, meta: ModelMeta, seed: int, device: str = "cpu") -> Classifier:
    """Instantiate an unfitted model from its validated settings (``registry.get(name).config``)."""
    return model_class(name)(settings=settings, meta=meta, seed=seed, device=device)


def load_model(path: str | Path, device: str = "cpu") -> Classifier:
    """Load a model saved by ``Classifier.save``; the suffix picks the loader (see the registry)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    if path.suffix.lower() in (".pkl", ".pickle", ".joblib"):
        # Unpickling runs whatever code the file names; a model file must never be code.
        raise InputError(
            f"{path}: pickle files are not loaded (loading one can run arbitrary code); "
            "retrain to get a .skops model file"
        )
    loaders = registry.loaders_for_suffix(path.suffix)
    if not loaders:
        suffixes = sorted({s.suffix for s in registry.specs()})
        raise InputError(f"{path}: not a saved model (expected {' or '.join(suffixes)})")
    return registry.ModelSpec.load_with(loaders[0], path, device)


def __getattr__(name: str) -> Any:
    if name == "MODEL_SUFFIX":  # kept for callers of the old table; derived from the registry
        return {s.name: s.suffix for s in registry.specs()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
