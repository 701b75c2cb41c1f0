"""Classical per-pixel baselines built on scikit-learn estimators: their common base and saved form.

The baselines (decision tree and random forest in :mod:`pipeline.models.trees`, gradient boosting
in :mod:`pipeline.models.boosting`, RBF SVM in :mod:`pipeline.models.svm`, Gaussian maximum
likelihood in :mod:`pipeline.models.max_likelihood`) classify a pixel from the features of
:mod:`pipeline.sampling.features`, configured per model by ``settings.features``: by default the
pixel's bands, the spectral indices its band names allow and each band's mean and standard
deviation over the k x k window the patch models see (then ``halo = k // 2``).
The same :class:`~pipeline.sampling.features.FeatureSpec` builds features from training
patches and from mapping blocks, so ``predict_block`` equals ``predict_patches``
at every pixel.

Every model fills ``self.fit_info`` (JSON-serialisable: sizes, chosen
hyper-parameters, caps) for the run to copy into ``metrics.json``.

This module holds :class:`SklearnPixelModel` (features, fit, predict) and the saved form
(:func:`save_classical`, :func:`load_classical`), which every subclass shares.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.core.atomic import atomic_path, json_safe
from pipeline.core.errors import InputError
from pipeline.models.base import ModelMeta, PatchRows, TrainingData, proba_to_labels
from pipeline.sampling.features import FeatureSpec


class SklearnPixelModel:
    """Base for models that classify each pixel from its features.

    Subclasses implement :meth:`_make_estimator` (and may override :meth:`_fit_features`
    / :meth:`_predict_features`). NaN features are filled by the feature module;
    pixels whose own bands are NaN are masked out by the mapper afterwards.
    """

    name: ClassVar[str] = ""
    # attributes derived from the saved state and rebuilt by ``_after_load``, never saved themselves
    # (e.g. a library object skops would not load safely, kept as a text format in the state)
    _derived: ClassVar[tuple[str, ...]] = ()
    _packed_trees: Any = None  # tree models: their trees repacked for compiled inference (rebuilt, not saved)

    def __init__(self, settings: Any, meta: ModelMeta, seed: int = 0, device: str = "cpu"):
        self.settings = settings
        self.meta = meta
        self.seed = seed
        self.device = device
        self.estimator: Any = None
        self.fit_info: dict[str, Any] = {}
        self.spec = FeatureSpec.from_config(getattr(settings, "features", None), meta.band_names, meta.patch_size)

    @property
    def halo(self) -> int:
        return self.spec.halo

    def _make_estimator(self) -> Any:
        raise NotImplementedError

    def features_from_patches(self, patches: PatchRows) -> np.ndarray:
        """(n, bands, k, k) -> (n, f) float32.

        Patches are read in chunks of bounded size (``patches`` may be a memory-mapped store
        or an index list over one): only the (n, f) features are ever whole in memory.
        """
        from pipeline.sampling.patches import row_chunks

        n = len(patches)
        chunks = list(row_chunks(patches))
        if len(chunks) <= 1:
            return self.spec.from_patches(np.asarray(patches[:]))
        out = np.empty((n, self.spec.n_features), dtype=np.float32)
        for a, b in chunks:
            out[a:b] = self.spec.from_patches(np.asarray(patches[a:b]))
        return out

    def features_from_block(self, block: np.ndarray) -> np.ndarray:
        """(bands, H + 2*halo, W + 2*halo) -> (H * W, f) float32."""
        return self.spec.from_block(block)

    def fit(self, train: TrainingData, validation: TrainingData | None = None) -> SklearnPixelModel:
        if len(train) == 0:
            raise InputError(f"{self.name}: no training samples")
        t0 = time.perf_counter()
        if self.spec.context:
            self._use_offset(_band_means(train.patches))
        X = self.features_from_patches(train.patches)
        y = np.asarray(train.y)
        self.fit_info = {
            "n_train": int(len(y)),
            "n_features": int(X.shape[1]),
            "features": self.spec.names(),
            "inputs": self.spec.describe(),
            "halo": int(self.halo),
        }
        self._fit_features(X, y, train, validation)
        self.fit_info["fit_seconds"] = round(time.perf_counter() - t0, 3)
        self.fit_info = json_safe(self.fit_info)
        return self

    def _use_offset(self, offset: np.ndarray) -> None:
        """Fix the per-band offset of the window statistics (kept in the saved model:
        ``feature_offset_``), so that features after loading are the ones the model was fitted on."""
        self.feature_offset_ = np.asarray(offset, dtype=np.float64)
        self.spec = replace(self.spec, offset=tuple(float(v) for v in self.feature_offset_))

    def _fit_features(self, X: np.ndarray, y: np.ndarray, train: TrainingData, validation: TrainingData | None) -> None:
        self.estimator = self._make_estimator()
        self.estimator.fit(X, y)

    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = self.estimator.predict_proba(X)
        return proba_to_labels(proba, self.estimator.classes_)

    def predict_patches(self, patches: PatchRows) -> tuple[np.ndarray, np.ndarray]:
        if len(patches) == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return self._predict_features(self.features_from_patches(patches))

    def _estimator_input(self, X: np.ndarray) -> np.ndarray:
        """Features as the fitted estimator takes them (models that standardise override this)."""
        return X

    def predict_proba_patches(self, patches: PatchRows) -> np.ndarray:
        """(n, bands, k, k) -> (n, len(meta.class_ids)) class probabilities, columns in the order of
        ``meta.class_ids`` (0 for a class the model left out). The labels of :meth:`predict_patches`
        are the argmax of these rows."""
        proba = self.estimator.predict_proba(self._estimator_input(self.features_from_patches(patches)))
        out = np.zeros((len(proba), len(self.meta.class_ids)), np.float64)
        pos = {int(c): i for i, c in enumerate(self.meta.class_ids)}
        out[:, [pos[int(c)] for c in self.estimator.classes_]] = proba
        return out

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = block.shape[1] - 2 * self.halo, block.shape[2] - 2 * self.halo
        labels, conf = self._predict_features(self.features_from_block(block))
        return labels.reshape(h, w), conf.reshape(h, w)

    def save(self, path: Path) -> Path:
        """Write the model to ``path`` atomically with skops (see :func:`save_classical`)."""
        return save_classical(self, Path(path))

    def _after_load(self) -> None:
        """Rebuild what is derived from the fitted state and not saved (nothing by default)."""


def _band_means(patches: PatchRows, max_bytes: int = 32 * 2**20) -> np.ndarray:
    """(bands,) mean of the centre pixels of the first patches (at most ``max_bytes`` of them),
    float32-rounded, 0 for a band with no value: the offset of the window statistics (any value
    near the data will do; it only keeps the float64 sums of squares from cancelling)."""
    _, bands, k, _ = patches.shape
    rows = max(1, min(len(patches), max_bytes // (4 * bands * k * k)))
    centre = np.asarray(patches[:rows][:, :, k // 2, k // 2], dtype=np.float64)
    with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # an all-NaN band: 0 below
        mean = np.nanmean(centre, axis=0)
    return np.nan_to_num(mean, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32).astype(np.float64)


# ----------------------------------------------------------------------------- saved form
# A classical model is saved with skops (a zip of JSON and arrays that loads without running
# code): the fitted estimator and arrays, plus the settings, metadata and fit report as JSON.
# Loading refuses any type outside skops' defaults and this list, so a tampered or foreign
# file is one clear error instead of code run on load. Pickles are never loaded.
SAVE_FORMAT = "landcover-classical/1"
TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",  # the fitted tree of DecisionTreeClassifier and of each forest tree
    # our estimator: arrays and floats only. Saved files name it by this path, so the class stays
    # in pipeline/models/gaussian.py (a file saved before a move would no longer load).
    "pipeline.models.gaussian.ShrunkGaussianClassifier",
]
# Attributes rebuilt from settings and metadata (or caches), not stored
# (``fast``: the SVM's predictor; ``_conf_nodes``, ``_packed_trees``: the trees' derived tables).
_REBUILT = ("settings", "meta", "spec", "device", "fast", "_conf_nodes", "_packed_trees", "fit_info")


def _state(model: SklearnPixelModel) -> dict[str, Any]:
    return {k: v for k, v in model.__dict__.items() if k not in _REBUILT and k not in model._derived}


def save_classical(model: SklearnPixelModel, path: Path) -> Path:
    import skops.io as sio

    blob = {
        "format": SAVE_FORMAT,
        "kind": model.name,
        "meta": model.meta.to_json(),
        "settings": model.settings.model_dump_json(),
        "fit_info": json.dumps(json_safe(model.fit_info)),
        "state": _state(model),
    }
    with atomic_path(path, lambda: len(sio.dumps(blob))) as tmp:  # the size: only on a full disk
        sio.dump(blob, tmp)
    return Path(path)


def load_classical(path: Path, device: str = "cpu") -> SklearnPixelModel:
    """Load a baseline saved by :meth:`SklearnPixelModel.save` (``device`` is unused: CPU models).

    Only types that skops trusts by default or that are listed in :data:`TRUSTED_TYPES` are
    loaded; anything else is refused before any object is built.
    """
    import skops.io as sio

    from pipeline.models import registry
    from pipeline.models.base import ModelMeta

    path = Path(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as e:  # noqa: BLE001 - a damaged zip, a pickle, any other file: not ours
        raise InputError(f"{path}: not a saved landcover model ({_first_line(e)})") from None
    refused = [t for t in untrusted if t not in TRUSTED_TYPES]
    if refused:
        raise InputError(
            f"{path}: refused to load: the file holds types that are not trusted "
            f"({', '.join(refused[:3])}{', ...' if len(refused) > 3 else ''})"
        )
    try:
        blob = sio.load(path, trusted=[t for t in untrusted])
        if not isinstance(blob, dict) or blob.get("format") != SAVE_FORMAT:
            raise ValueError(f"format {SAVE_FORMAT} expected")
        spec = registry.get(str(blob["kind"]))
        meta = ModelMeta.from_dict(json.loads(blob["meta"]))
        settings = spec.config.model_validate_json(blob["settings"])
        model = spec.model_class()(settings=settings, meta=meta, seed=int(blob["state"].get("seed", 0)), device=device)
        if not isinstance(model, SklearnPixelModel):
            raise ValueError(f"{spec.name} is not a classical model")
        for k, v in dict(blob["state"]).items():
            if not (isinstance(k, str) and k.isidentifier() and not k.startswith("__")) or k in (
                *_REBUILT,
                *model._derived,
            ):
                raise ValueError(f"unexpected attribute {k!r}")
            setattr(model, k, v)
        model.fit_info = json.loads(blob["fit_info"])
        if getattr(model, "feature_offset_", None) is not None:
            model._use_offset(model.feature_offset_)
        model._after_load()
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever is wrong inside, the file is not a model we saved
        raise InputError(f"{path}: not a saved landcover model ({_first_line(e)})") from None
    return model


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
