"""Classical per-pixel baselines built on scikit-learn estimators."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from pipeline.errors import InputError
from pipeline.models.base import ModelMeta, TrainingData, proba_to_labels


class SklearnPixelModel:
    """Base for models that classify each pixel from its own band values.

    Subclasses implement :meth:`_make_estimator`. Features are the centre
    pixel's bands; NaN (nodata) pixels are filled with 0 before prediction and
    masked out by the mapper afterwards.
    """

    name: ClassVar[str] = ""

    def __init__(self, settings: Any, meta: ModelMeta, seed: int = 0, device: str = "cpu"):
        self.settings = settings
        self.meta = meta
        self.seed = seed
        self.estimator: Any = None

    @property
    def halo(self) -> int:
        return 0

    def _make_estimator(self) -> Any:
        raise NotImplementedError

    def features_from_patches(self, patches: np.ndarray) -> np.ndarray:
        """(n, bands, k, k) -> (n, f) float32."""
        c = patches.shape[-1] // 2
        return np.nan_to_num(np.asarray(patches[:, :, c, c], dtype=np.float32))

    def features_from_block(self, block: np.ndarray) -> np.ndarray:
        """(bands, H + 2*halo, W + 2*halo) -> (H * W, f) float32."""
        b = block.shape[0]
        return np.nan_to_num(block.reshape(b, -1).T.astype(np.float32, copy=False))

    def fit(self, train: TrainingData, validation: TrainingData | None = None) -> "SklearnPixelModel":
        self.estimator = self._make_estimator()
        self.estimator.fit(self.features_from_patches(train.patches), train.y)
        return self

    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = self.estimator.predict_proba(X)
        return proba_to_labels(proba, self.estimator.classes_)

    def predict_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._predict_features(self.features_from_patches(patches))

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = block.shape[1] - 2 * self.halo, block.shape[2] - 2 * self.halo
        labels, conf = self._predict_features(self.features_from_block(block))
        return labels.reshape(h, w), conf.reshape(h, w)

    def save(self, path: Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return path


class DecisionTreeModel(SklearnPixelModel):
    name = "decision_tree"

    def _make_estimator(self) -> DecisionTreeClassifier:
        s = self.settings
        return DecisionTreeClassifier(max_depth=s.max_depth, min_samples_leaf=s.min_samples_leaf,
                                      random_state=self.seed)


def load_classical(path: Path) -> SklearnPixelModel:
    """Load a pickled baseline saved by :meth:`SklearnPixelModel.save`."""
    try:
        with open(path, "rb") as f:
            model = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError) as e:
        raise InputError(f"{path}: not a saved landcover model ({e})") from None
    if not isinstance(model, SklearnPixelModel):
        raise InputError(f"{path}: not a saved landcover model")
    return model
