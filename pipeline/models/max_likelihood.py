"""Gaussian maximum likelihood baseline: one shrunk full-covariance Gaussian per class.

The estimator itself is :class:`pipeline.models.gaussian.ShrunkGaussianClassifier` (it stays in
its module: saved ``.skops`` files name it there as a trusted type).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.errors import InputError
from pipeline.models.classical import SklearnPixelModel


class MaxLikelihoodModel(SklearnPixelModel):
    """Gaussian maximum likelihood: one full-covariance Gaussian per class.

    The estimator is :class:`~pipeline.models.gaussian.ShrunkGaussianClassifier` on
    standardised features (standardising does not change a Gaussian classifier, but puts the
    shrinkage target, a scaled identity, on every feature's scale). ``reg_param`` is the
    shrinkage of each class covariance: ``auto`` (default) estimates it per class (OAS), so a
    class with fewer training pixels than bands still has a usable covariance; a number in
    [0, 1] fixes it. Priors: ``equal`` (the classic remote-sensing ML classifier) or
    ``proportional`` (training class frequencies). Classes with fewer than 2 training samples
    have no covariance and are left out (``fit_info['dropped_classes']``, a warning of the run).
    Confidence = the posterior probability of the winning class.
    """

    name = "max_likelihood"

    def _make_estimator(self) -> Any:
        from pipeline.models.gaussian import ShrunkGaussianClassifier

        return ShrunkGaussianClassifier(shrinkage=self.settings.reg_param)

    def _fit_features(self, X, y, train, validation) -> None:
        classes, counts = np.unique(y, return_counts=True)
        keep_classes = classes[counts >= 2]
        dropped = classes[counts < 2]
        if len(keep_classes) < 2:
            raise InputError(f"{self.name}: needs at least 2 classes with 2 or more training samples each")
        keep = np.isin(y, keep_classes)
        X, y = X[keep], y[keep]
        self.mean_ = X.mean(axis=0).astype(np.float32)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        est = self._make_estimator()
        if self.settings.priors == "equal":
            est.set_params(priors=np.full(len(keep_classes), 1.0 / len(keep_classes)))
        est.fit((X - self.mean_) / self.scale_, y)
        self.estimator = est
        few = {int(c): int(n) for c, n in zip(keep_classes, counts[counts >= 2]) if n <= X.shape[1]}
        self.fit_info.update(
            priors=self.settings.priors,
            reg_param=self.settings.reg_param,
            shrinkage={int(c): round(float(a), 6) for c, a in zip(est.classes_, est.shrinkage_)},
            classes_with_fewer_samples_than_features=few,
            dropped_classes=[int(c) for c in dropped],
            dropped_reason={
                int(c): f"{int(n)} training sample (a covariance needs 2)" for c, n in zip(classes, counts) if n < 2
            },
            n_train_used=int(len(y)),
            hyperparameters={
                "priors": self.settings.priors,
                "shrinkage": f"{float(est.shrinkage_.min()):.3g}-{float(est.shrinkage_.max()):.3g}"
                + (" (OAS per class)" if self.settings.reg_param == "auto" else ""),
            },
        )

    def _estimator_input(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_  # float32 (n, f): the estimator works in float64 chunks

    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and winning posterior by one whitened quadratic form per class and pixel
        (:meth:`~pipeline.models.gaussian.ShrunkGaussianClassifier.labels_confidence`), the
        standardisation folded into the whitening."""
        labels, conf = self.estimator.labels_confidence(X, shift=self.mean_, scale=self.scale_)
        return np.asarray(labels).astype(np.int64), conf

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`SklearnPixelModel.predict_block`, from the window's feature planes
        (``FeatureSpec.planes_from_block``): the kernel runs over pixels plane by plane, so the
        rows of ``features_from_block`` would only be transposed back."""
        h, w = block.shape[1] - 2 * self.halo, block.shape[2] - 2 * self.halo
        planes = self.spec.planes_from_block(block)
        labels, conf = self.estimator.labels_confidence(planes, columns=True, shift=self.mean_, scale=self.scale_)
        return np.asarray(labels).astype(np.int64).reshape(h, w), conf.reshape(h, w)
