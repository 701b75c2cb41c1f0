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
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.covariance import OAS, empirical_covariance, shrunk_covariance
from sklearn.utils.validation import check_is_fitted, validate_data

CHUNK_BYTES = 4 * 2**20  # float64 input rows per logpdf call (memory of prediction, see _joint_log_likelihood)
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
        return self

    def _joint_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """(n, n_classes) log p(x | class) + log prior, computed over rows in chunks of about
        :data:`CHUNK_BYTES` of input.

        scipy's ``logpdf`` holds several float64 arrays the size of its input per class (centred,
        whitened, squared). On a mapping window of 218 bands that was about 0.25 GB per mapping
        thread, the peak of a whole run; the rows are independent, so chunks change nothing else.
        """
        out = np.empty((len(X), len(self.classes_)))
        with np.errstate(divide="ignore"):
            log_priors = np.log(self.priors_)
        dists = [multivariate_normal(self.means_[k], self.covariance_[k]) for k in range(len(self.classes_))]
        step = max(256, CHUNK_BYTES // (8 * max(1, X.shape[1])))
        for a in range(0, len(X), step):
            rows = X[a : a + step]
            for k, dist in enumerate(dists):
                out[a : a + step, k] = dist.logpdf(rows) + log_priors[k]
        return out

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
