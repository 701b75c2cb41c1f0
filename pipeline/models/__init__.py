"""Model registry: build a model by name, load a saved one from its file."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.models.base import Classifier, ModelMeta, TrainingData

__all__ = ["Classifier", "ModelMeta", "TrainingData", "build_model", "load_model", "model_class", "MODEL_SUFFIX"]

_REGISTRY = {
    "decision_tree": ("pipeline.models.classical", "DecisionTreeModel"),
    "random_forest": ("pipeline.models.classical", "RandomForestModel"),
    "svm": ("pipeline.models.classical", "SVMModel"),
    "max_likelihood": ("pipeline.models.classical", "MaxLikelihoodModel"),
    "cnn": ("pipeline.models.deep", "CNNModel"),
    "resnet": ("pipeline.models.deep", "ResNetModel"),
}
# File suffix of each model's saved form: torch state dicts for deep models, pickles otherwise.
MODEL_SUFFIX = {name: (".pt" if name in ("cnn", "resnet") else ".pkl") for name in _REGISTRY}


def model_class(name: str) -> type:
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, settings: Any, meta: ModelMeta, seed: int, device: str = "cpu") -> Classifier:
    """Instantiate an unfitted model from its validated settings (a ``config.*Config``)."""
    return model_class(name)(settings=settings, meta=meta, seed=seed, device=device)


def load_model(path: str | Path, device: str = "cpu") -> Classifier:
    """Load a model saved by ``Classifier.save``; the suffix tells the format."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    if path.suffix == ".pt":
        from pipeline.models.deep import load_deep

        return load_deep(path, device=device)
    if path.suffix == ".pkl":
        from pipeline.models.classical import load_classical

        return load_classical(path)
    raise InputError(f"{path}: not a saved model (expected .pt or .pkl)")
