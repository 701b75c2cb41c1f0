"""The one table of models: adding a model is one class, one settings class and one entry here.

Everything that needs to know which models exist reads this table: the ``models:`` section
of the config (:class:`pipeline.config.RunConfig`; one optional field per entry, in table
order), ``--models``, the saved file suffix, whether a stage key depends on the device,
which loader opens a saved file (:func:`load_model`), and the scikit-learn wrapper
(:class:`pipeline.models.estimator.LandcoverClassifier`).

A :class:`ModelSpec` names its implementation as ``"module:Class"`` and imports it on
first use, so that reading a config never imports torch.

How to add a model
------------------
1. **The class.** It implements the :class:`~pipeline.models.base.Classifier` protocol
   (:mod:`pipeline.models.base` says what ``fit``, ``predict_patches``, ``predict_block``,
   ``halo`` and ``save`` must do) and names itself in ``name``. Usually it subclasses one of:

   * :class:`~pipeline.models.classical.SklearnPixelModel` for a per-pixel scikit-learn
     estimator: write ``_make_estimator`` (and, if it needs more, ``_fit_features`` /
     ``_predict_features``), in a module of its own family like :mod:`pipeline.models.trees`,
     :mod:`pipeline.models.svm` or :mod:`pipeline.models.max_likelihood`. Features, the fit
     report and the skops file come with the base. An estimator class of our own (not
     scikit-learn's) must be listed in :data:`pipeline.models.classical.TRUSTED_TYPES`, and its
     module path then stays fixed: saved files name it (as ``pipeline.models.gaussian``).
   * :class:`~pipeline.models.deep.DeepModel` for a patch network: write ``build_network``
     (networks in :mod:`pipeline.models.nets`); training, dense inference and the ``.pt``
     file come with the base.
2. **The settings.** A pydantic class with ``extra="forbid"`` (:class:`pipeline.core.settings.Strict`),
   beside the others in :mod:`pipeline.models.settings`; a pixel model takes a
   ``features: FeatureConfig`` field (:mod:`pipeline.sampling.settings`).
3. **The entry.** One :class:`ModelSpec` in ``_BUILTIN`` below (its position is its place in
   reports and in ``models.enabled()``), or, from outside the package, :func:`register` at
   import time of the plug-in (:func:`registered` for a ``with`` block). The config's
   ``models.<name>`` section, ``--models``, the file suffix, :func:`build_model`,
   :func:`load_model` and ``LandcoverClassifier(<name>)`` then follow. A saved model is
   loaded through the table, so its name must be registered before its file is loaded.

Example (a toy model, see ``tests/test_registry.py``, which trains, maps and reloads it
through the whole pipeline)::

    register(ModelSpec("toy", ToyConfig, "my_package.toy:ToyModel", suffix=".skops", kind="pixel"))
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from pipeline.core.errors import InputError
from pipeline.models.settings import (
    CNNConfig,
    DecisionTreeConfig,
    GradientBoostingConfig,
    MaxLikelihoodConfig,
    RandomForestConfig,
    ResNetConfig,
    SVMConfig,
)

if TYPE_CHECKING:
    from pipeline.models.base import Classifier, ModelMeta


def _import(target: str | Any) -> Any:
    """``"package.module:name"`` -> the object (objects pass through)."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the pipeline.

    name : key in the config's ``models:`` section, in ``--models`` and in output file names.
    config : the pydantic settings class of ``models.<name>`` (extra keys forbidden).
    impl : the class implementing :class:`pipeline.models.base.Classifier`, or ``"module:Class"``.
    suffix : file suffix of a saved model (``.pt`` torch state dict loaded with ``weights_only``,
        ``.skops`` classical: skops, which loads without running code; never pickle).
    kind : ``"pixel"`` (classifies a pixel from its own bands, perhaps with window statistics)
        or ``"patch"`` (needs the k x k neighbourhood: a network over patches).
    deep : trained with torch on a device; the device then enters the stage key.
    loader : function ``(path, device) -> Classifier`` opening a saved file of this suffix, or
        ``"module:function"``.
    """

    name: str
    config: type[BaseModel]
    impl: str | type
    suffix: str = ".skops"
    kind: Literal["pixel", "patch"] = "pixel"
    deep: bool = False
    loader: str | Any = "pipeline.models.classical:load_classical"

    def model_class(self) -> type:
        return _import(self.impl)

    def load(self, path: Any, device: str = "cpu") -> Any:
        return self.load_with(self.loader, path, device)

    @staticmethod
    def load_with(loader: str | Any, path: Any, device: str = "cpu") -> Any:
        return _import(loader)(path, device=device)


_BUILTIN = (
    ModelSpec("decision_tree", DecisionTreeConfig, "pipeline.models.trees:DecisionTreeModel"),
    ModelSpec("random_forest", RandomForestConfig, "pipeline.models.trees:RandomForestModel"),
    ModelSpec("gradient_boosting", GradientBoostingConfig, "pipeline.models.boosting:GradientBoostingModel"),
    ModelSpec("svm", SVMConfig, "pipeline.models.svm:SVMModel"),
    ModelSpec("max_likelihood", MaxLikelihoodConfig, "pipeline.models.max_likelihood:MaxLikelihoodModel"),
    ModelSpec(
        "cnn",
        CNNConfig,
        "pipeline.models.deep:CNNModel",
        suffix=".pt",
        kind="patch",
        deep=True,
        loader="pipeline.models.deep:load_deep",
    ),
    ModelSpec(
        "resnet",
        ResNetConfig,
        "pipeline.models.deep:ResNetModel",
        suffix=".pt",
        kind="patch",
        deep=True,
        loader="pipeline.models.deep:load_deep",
    ),
)

# The table itself. Mutated only through register()/unregister(); read through the functions below.
_SPECS: dict[str, ModelSpec] = {s.name: s for s in _BUILTIN}


def specs() -> list[ModelSpec]:
    """Every registered model, in table order (the order of reports and of ``enabled()``)."""
    return list(_SPECS.values())


def model_names() -> tuple[str, ...]:
    return tuple(_SPECS)


def deep_models() -> tuple[str, ...]:
    return tuple(s.name for s in _SPECS.values() if s.deep)


def get(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name is an :class:`InputError` listing the choices."""
    try:
        return _SPECS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; choose from {', '.join(_SPECS)}") from None


def model_suffix(name: str) -> str:
    return get(name).suffix


def model_class(name: str) -> type:
    return get(name).model_class()


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the table (a name already taken is an error)."""
    if spec.name in _SPECS:
        raise ValueError(f"model {spec.name!r} is registered already")
    if not spec.name.isidentifier():
        raise ValueError(f"model name {spec.name!r} must be a Python identifier (it is a config key)")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _SPECS.pop(name, None)


@contextmanager
def registered(spec: ModelSpec) -> Iterator[ModelSpec]:
    """Register ``spec`` for the duration of a ``with`` block (tests, plug-ins tried out)."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def loaders_for_suffix(suffix: str) -> list[Any]:
    """Distinct loaders of the models saved with ``suffix`` (in table order)."""
    out: list[Any] = []
    for s in _SPECS.values():
        if s.suffix == suffix and s.loader not in out:
            out.append(s.loader)
    return out


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
    loaders = loaders_for_suffix(path.suffix)
    if not loaders:
        suffixes = sorted({s.suffix for s in specs()})
        raise InputError(f"{path}: not a saved model (expected {' or '.join(suffixes)})")
    return ModelSpec.load_with(loaders[0], path, device)
