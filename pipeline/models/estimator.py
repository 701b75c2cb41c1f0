"""A scikit-learn classifier over any model of the registry, for arrays instead of run directories.

    >>> from pipeline import LandcoverClassifier
    >>> clf = LandcoverClassifier("random_forest", settings={"n_estimators": 50}).fit(X, y)
    >>> clf.predict(X_new); clf.predict_proba(X_new)

``X`` is either pixels, shape ``(n, bands)``, or patches centred on the pixels to classify,
shape ``(n, bands, k, k)`` with ``k`` odd (what the patch models ``cnn`` and ``resnet``, and
classical models with ``features.patch_stats``, need for spatial context; with pixels they
see a 1 x 1 neighbourhood). NaN marks nodata, as in the pipeline. ``y`` holds any labels
(ints or strings); ``classes_`` are its sorted unique values.

The estimator builds the pipeline's own model (:func:`pipeline.models.build_model`) with
the settings of ``models.<model>`` in a config, validated by the same pydantic class, and
calls its ``fit`` / ``predict_patches`` (the code a run executes). It works with
``clone``, ``GridSearchCV`` (``settings`` is one parameter: search over whole dicts) and
``cross_val_score``; pass ``groups`` to ``fit`` for the SVM's grouped C/gamma search.
``predict_proba`` exists for models with probabilities (not ``svm``, whose confidence is a
vote share, as ``SVC(probability=False)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from pipeline.core.errors import InputError
from pipeline.inputs.value_range import training_value_range
from pipeline.models import registry
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.registry import build_model

__all__ = ["LandcoverClassifier"]


def _has_proba(est: LandcoverClassifier) -> bool:
    return callable(getattr(registry.get(est.model).model_class(), "predict_proba_patches", None))


class LandcoverClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn classifier wrapping a registered pipeline model.

    Parameters
    ----------
    model : str
        A name of :mod:`pipeline.models.registry` (``decision_tree``, ``random_forest``, ``svm``,
        ``max_likelihood``, ``cnn``, ``resnet``, or any registered one).
    settings : dict or None
        The model's settings, as under ``models.<model>:`` in a run config (validated there).
    band_names : list of str or None
        Names of the bands (needed by spectral-index features such as ``ndvi``); default
        ``band_1 ... band_n``.
    random_state : int, RandomState or None
        Seed of the model (an int gives the same model as a run with that ``seed``).
    device : str
        Torch device of the deep models (``cpu``, ``cuda``, ``mps``, ``auto``).

    Attributes
    ----------
    classes_ : (n_classes,) the labels seen in ``fit``, sorted
    n_features_in_ : number of bands
    patch_size_ : k of the patches the model was fitted on (1 for pixels)
    model_ : the fitted pipeline model (``Classifier`` protocol)
    """

    def __init__(
        self,
        model: str = "decision_tree",
        settings: dict | None = None,
        band_names: list[str] | None = None,
        random_state: Any = 0,
        device: str = "cpu",
    ):
        self.model = model
        self.settings = settings
        self.band_names = band_names
        self.random_state = random_state
        self.device = device

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN is nodata, which every model handles
        # A network trained for a few epochs on scikit-learn's tiny check data need not reach its
        # accuracy bar (0.83 on a 3-class toy set); scikit-learn's own MLP is tagged the same way.
        tags.classifier_tags.poor_score = (
            registry.get(self.model).deep if self.model in registry.model_names() else False
        )
        return tags

    # -- input --------------------------------------------------------------------------------------
    def _patches(self, X: Any, reset: bool) -> np.ndarray:
        """Validated float32 (n, bands, k, k) from pixels (n, bands) or patches (n, bands, k, k)."""
        X = validate_data(
            self, X, reset=reset, allow_nd=True, dtype=np.float32, ensure_all_finite="allow-nan", ensure_min_features=1
        )
        if X.ndim == 2:
            X = X[:, :, None, None]
        elif X.ndim != 4 or X.shape[2] != X.shape[3] or X.shape[2] % 2 == 0:
            raise ValueError(
                f"X must be pixels (n, bands) or square patches (n, bands, k, k) with odd k; got shape {X.shape}"
            )
        if not reset and X.shape[2] < self.patch_size_:
            raise ValueError(
                f"X has patches of {X.shape[2]}x{X.shape[2]} pixels, the model was fitted on "
                f"{self.patch_size_}x{self.patch_size_}"
            )
        return X

    def _bands(self, n: int) -> list[str]:
        names = list(self.band_names) if self.band_names is not None else [f"band_{i + 1}" for i in range(n)]
        if len(names) != n:
            raise ValueError(f"band_names has {len(names)} names, X has {n} bands")
        return names

    # -- fit / predict --------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None) -> LandcoverClassifier:
        """Fit on pixels or patches ``X`` and labels ``y``; ``groups`` (n,) ids of the source polygons."""
        spec = registry.get(self.model)
        patches = self._patches(X, reset=True)
        y = column_or_1d(y, warn=True)
        if len(y) != len(patches):
            raise ValueError(f"X has {len(patches)} samples, y has {len(y)}")
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("Classifier can't train when only one class is present.")
        settings = spec.config.model_validate(self.settings or {})
        self.patch_size_ = int(patches.shape[2])
        n_classes = len(self.classes_)
        meta = ModelMeta(
            model=self.model,
            band_names=self._bands(patches.shape[1]),
            class_ids=list(range(n_classes)),
            class_names=[str(c) for c in self.classes_],
            class_colors=["#808080"] * n_classes,
            patch_size=self.patch_size_,
            # The training values' percentiles, so that `landcover map` warns about an input in other
            # units; no data types: arrays handed to fit say nothing of the raster's own type.
            value_range=training_value_range(patches[:, :, self.patch_size_ // 2, self.patch_size_ // 2], []),
        )
        rs = self.random_state
        seed = int(rs) if isinstance(rs, (int, np.integer)) else int(check_random_state(rs).randint(2**31 - 1))
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        data = TrainingData(
            patches, y_idx.astype(np.int64), groups.astype(np.int64), np.zeros((len(y), 2)), meta.band_names
        )
        try:
            m = build_model(self.model, settings, meta, seed=seed, device=self.device)
            if hasattr(m, "progress"):
                m.progress = False
            self.model_ = m.fit(data, None)
        except InputError as e:  # scikit-learn's contract: bad data is a ValueError
            raise ValueError(str(e)) from None
        return self

    def _centred(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        p = self._patches(X, reset=False)
        c = (p.shape[2] - self.patch_size_) // 2  # larger patches are centre-cropped
        return p[:, :, c : c + self.patch_size_, c : c + self.patch_size_] if c else p

    def predict(self, X: Any) -> np.ndarray:
        """(n,) labels of the pixels (or patch centres) of ``X``."""
        patches = self._centred(X)
        ids, _ = self.model_.predict_patches(patches)
        return self.classes_[np.asarray(ids, dtype=np.int64)]

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, n_classes) class probabilities, columns in the order of ``classes_``."""
        patches = self._centred(X)
        return np.asarray(self.model_.predict_proba_patches(patches), dtype=np.float64)  # type: ignore[attr-defined]
