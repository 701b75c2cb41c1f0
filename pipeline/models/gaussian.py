"""Gaussian maximum likelihood with shrunk class covariances (a scikit-learn estimator).

The classic remote-sensing maximum likelihood classifier fits one full-covariance Gaussian per
class. With fewer training pixels than features (hyperspectral bands, rare classes) a class's
sample covariance is singular and the classifier breaks. Each class covariance here is shrunk
towards a scaled identity, the target of Ledoit-Wolf and OAS::

    cov_k = (1 - a_k) * S_k + a_k * (trace(S_k) / d) * I

with ``S_k`` the class's maximum-likelihood covariance. ``a_k`` is either one fixed number
(``shrinkage=0.1``) or, with ``shrinkage="auto"``, the Oracle Approximating Shrinkage
estimate of each class (Chen, Wiesel, Eldar & Hero 2010; ``sklearn.covariance.OAS``), which
grows as a class has fewer pixels for its features. A tiny ridge keeps a class of identical
pixels (zero variance) usable.

Prediction is one quadratic form per class and pixel, ``||L_k^-1 (x - mu_k)||^2`` with
``cov_k = L_k L_k^T`` (Cholesky): labels and the winning posterior by a compiled kernel that
forms it pixel by pixel (:meth:`ShrunkGaussianClassifier.labels_confidence`, what mapping uses);
the probabilities of ``predict_proba`` from the whitening matrices of all classes side by side,
one float64 matrix product per chunk of pixels, ``X @ W - b``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.covariance import OAS, empirical_covariance, shrunk_covariance
from sklearn.utils.validation import check_is_fitted, validate_data

CHUNK_BYTES = 4 * 2**20  # float64 whitened values per chunk of rows (memory of prediction, see _joint_log_likelihood)
RIDGE = 1e-6  # added to every variance (features are standardised by the caller: a relative floor)


class ShrunkGaussianClassifier(ClassifierMixin, BaseEstimator):
    """One Gaussian per class with a shrunk covariance; Bayes rule with the given priors.

    Parameters
    ----------
    shrinkage : "auto" or float in [0, 1]
        ``"auto"``: OAS shrinkage per class. A number: that shrinkage for every class
        (0 is the plain maximum-likelihood covariance and needs more pixels than features).
    priors : array (n_classes,) or None
        Class priors in the order of ``np.unique(y)``; None: the training frequencies.

    Attributes
    ----------
    classes_ : (n_classes,) class labels
    means_ : (n_classes, n_features)
    covariance_ : (n_classes, n_features, n_features) the shrunk covariances
    shrinkage_ : (n_classes,) the shrinkage each class got
    priors_ : (n_classes,)
    whiten_ : (n_features, n_classes * n_features) ``L_k^-T`` of every class side by side
    whiten_offset_ : (n_classes * n_features,) ``mu_k L_k^-T`` of every class side by side
    log_norm_ : (n_classes,) log prior - log det(L_k) - d/2 log(2 pi) of each class
    """

    def __init__(self, shrinkage: float | Literal["auto"] = "auto", priors: np.ndarray | None = None):
        self.shrinkage = shrinkage
        self.priors = priors

    def fit(self, X: np.ndarray, y: np.ndarray) -> ShrunkGaussianClassifier:
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_, counts = np.unique(y, return_counts=True)
        if len(self.classes_) < 2:
            raise ValueError(f"needs at least 2 classes, got {self.classes_.tolist()}")
        d = X.shape[1]
        means, covs, alphas = [], [], []
        for c, n in zip(self.classes_, counts):
            Xc = X[y == c]
            c = c.item() if isinstance(c, np.generic) else c
            if n < 2:
                raise ValueError(f"class {c!r} has {n} training sample; a covariance needs at least 2")
            if self.shrinkage == "auto":
                alpha = float(OAS(assume_centered=False).fit(Xc).shrinkage_)
            else:
                alpha = float(self.shrinkage)
                if not 0.0 <= alpha <= 1.0:
                    raise ValueError(f"shrinkage must be 'auto' or in [0, 1], got {self.shrinkage!r}")
                if alpha == 0.0 and n <= d:
                    raise ValueError(
                        f"class {c!r} has {n} training samples for {d} features: its covariance "
                        "is singular without shrinkage (use reg_param 'auto' or a value above 0)"
                    )
            cov = (
                shrunk_covariance(empirical_covariance(Xc), shrinkage=alpha) if alpha > 0 else empirical_covariance(Xc)
            )
            means.append(Xc.mean(axis=0))
            covs.append(cov + RIDGE * np.eye(d))
            alphas.append(alpha)
        self.means_ = np.asarray(means)
        self.covariance_ = np.asarray(covs)
        self.shrinkage_ = np.asarray(alphas)
        if self.priors is None:
            self.priors_ = counts / counts.sum()
        else:
            p = np.asarray(self.priors, dtype=np.float64)
            if p.shape != (len(self.classes_),) or np.any(p < 0) or p.sum() <= 0:
                raise ValueError(f"priors must be {len(self.classes_)} non-negative numbers")
            self.priors_ = p / p.sum()
        self._set_whitening()
        return self

    def _set_whitening(self) -> None:
        """The factors of :meth:`_joint_log_likelihood` from ``means_``, ``covariance_``, ``priors_``
        (computed by ``fit``; a model saved before they existed gets them on first use)."""
        n_classes, d = self.means_.shape
        whiten = np.empty((d, n_classes * d))
        log_norm = np.empty(n_classes)
        with np.errstate(divide="ignore"):
            log_priors = np.log(self.priors_)
        for k in range(n_classes):
            chol = np.linalg.cholesky(self.covariance_[k])
            inv = solve_triangular(chol, np.eye(d), lower=True)  # L^-1
            whiten[:, k * d : (k + 1) * d] = inv.T
            log_norm[k] = log_priors[k] - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)
        self.whiten_ = whiten
        self.whiten_offset_ = np.einsum("kd,dkj->kj", self.means_, whiten.reshape(d, n_classes, d)).ravel()
        self.log_norm_ = log_norm

    def _joint_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """(n, n_classes) log p(x | class) + log prior, float64: ``-||L_k^-1 (x - mu_k)||^2 / 2``
        plus each class's normalisation, for all classes by one matrix product per chunk of rows.

        Chunks hold about :data:`CHUNK_BYTES` of whitened values (n_classes x n_features per row):
        a mapping window of 218 bands then stays a few MB per thread instead of a whitened copy of
        the window per class.
        """
        if getattr(self, "whiten_", None) is None:
            self._set_whitening()
        n_classes, d = self.means_.shape
        out = np.empty((len(X), n_classes))
        step = max(256, CHUNK_BYTES // (8 * n_classes * max(1, d)))
        for a in range(0, len(X), step):
            z = np.asarray(X[a : a + step], dtype=np.float64) @ self.whiten_
            z -= self.whiten_offset_
            z *= z
            out[a : a + step] = self.log_norm_ - 0.5 * z.reshape(len(z), n_classes, d).sum(axis=2)
        return out

    def labels_confidence(
        self,
        X: np.ndarray,
        columns: bool = False,
        shift: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_features) rows, or with ``columns=True`` (n_features, n) planes (a mapping
        window's feature planes, read where they are) -> (class labels (n,), posterior of the
        winning class float32 (n,)): ``predict`` and the maximum of ``predict_proba`` of
        ``(X - shift) / scale`` (default: ``X`` itself), by a compiled kernel that forms each
        class's whitened quadratic form pixel by pixel (:mod:`pipeline.models._gaussian_kernels`;
        about ``n_classes * d^2 / 2`` multiply-adds a pixel, no (n, n_classes) array).

        The standardisation is folded into the whitening, ``L_k^-1 ((x - shift) / scale - mu_k) =
        (L_k^-1 / scale) (x - shift) - L_k^-1 mu_k``, so no standardised copy of ``X`` is made."""
        from pipeline.models._gaussian_kernels import gaussian_argmax

        check_is_fitted(self)
        if getattr(self, "whiten_", None) is None:
            self._set_whitening()
        n_classes, d = self.means_.shape
        P = np.asarray(X)
        if not columns:
            P = P.T
        P = np.ascontiguousarray(P)
        if P.dtype not in (np.float32, np.float64):
            P = P.astype(np.float64)
        if P.ndim != 2 or P.shape[0] != d:
            raise ValueError(f"X must be {f'({d}, n)' if columns else f'(n, {d})'}, got {np.shape(X)}")
        # whiten_[j, k*d + i] = (L_k^-1)[i, j]  ->  inv_chol[k, i, j]
        inv_chol = self.whiten_.reshape(d, n_classes, d).transpose(1, 2, 0)
        centre = np.zeros(d) if shift is None else np.asarray(shift, dtype=np.float64).reshape(d)
        s = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64).reshape(d)
        A = np.ascontiguousarray(inv_chol / s[None, None, :])
        offset = np.ascontiguousarray(np.einsum("kij,kj->ki", inv_chol, self.means_))
        n = P.shape[1]
        lab = np.empty(n, np.int64)
        conf = np.empty(n, np.float64)
        gaussian_argmax(P, 0, n, centre, A, offset, np.ascontiguousarray(self.log_norm_), lab, conf)
        return self.classes_[lab], conf.astype(np.float32)

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        jll = self._joint_log_likelihood(X).reshape(len(X), -1)
        return jll - logsumexp(jll, axis=1, keepdims=True)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, n_classes) posterior probabilities."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_log_proba(X), axis=1)]
