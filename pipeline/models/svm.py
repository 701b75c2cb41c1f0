"""RBF support vector machine baseline: scikit-learn ``SVC`` fitted on a capped, standardised
training set with C and gamma chosen by grouped validation, predicted by the exact-vote
:class:`pipeline.models.svm_fast.FastSVC`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.cancel import check_cancelled
from pipeline.core.errors import InputError
from pipeline.models.classical import SklearnPixelModel


def stratified_cap(y: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified, seeded subsample of at most ``cap`` samples.

    Each class keeps a share proportional to its frequency (largest remainders), and at
    least one sample, so rare classes are never lost.
    """
    y = np.asarray(y)
    n = len(y)
    if n <= cap:
        return np.arange(n)
    classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = counts * (cap / n)
    take = np.maximum(np.floor(quota).astype(np.int64), 1)
    take = np.minimum(take, counts)
    left = cap - int(take.sum())
    if left > 0:
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        for c in order:
            if left == 0:
                break
            if take[c] < counts[c]:
                take[c] += 1
                left -= 1
    rng = np.random.default_rng(seed)
    idx = [rng.choice(np.flatnonzero(inv == c), size=int(take[c]), replace=False) for c in range(len(classes))]
    return np.sort(np.concatenate(idx))


class SVMModel(SklearnPixelModel):
    """RBF support vector machine (sklearn ``SVC``) with a fast exact-vote predictor.

    * Features are standardised with the training set's mean and std.
    * Training-set cap: at most ``settings.max_train_samples`` samples (SVC training is
      quadratic to cubic in n); above it, a class-stratified subsample seeded by the run
      seed is used (:func:`stratified_cap`), and ``fit_info`` reports
      ``train_cap_applied``, ``n_train_original`` and ``n_train_used``.
    * C and gamma (grids ``settings.C`` x ``settings.gamma``) are chosen by macro-F1 on the
      validation split when it has at least two classes, otherwise by 3-fold
      ``GroupKFold`` over the training groups (polygons), so that no polygon is on both
      sides (stratified 3-fold if there are fewer than 3 groups). Ties go to the first
      candidate in grid order. The final model is refitted on the (capped) training set.
    * Prediction uses :class:`pipeline.models.svm_fast.FastSVC` (same one-vs-one votes as
      ``SVC.predict``). Confidence = fraction of its one-vs-one contests that the winning
      class won (a vote share, not a probability; always 1 with two classes).
    """

    name = "svm"
    predict_proba_patches = None  # type: ignore[assignment]  # one-vs-one votes, not probabilities (as SVC(probability=False))

    def __init__(self, *a: Any, **k: Any):
        super().__init__(*a, **k)
        self.map_workers = 1  # FastSVC spreads each block over the cores itself
        self.fast: Any = None

    def _svc(self, C: float, gamma: float | str) -> Any:
        from sklearn.svm import SVC

        return SVC(kernel="rbf", C=float(C), gamma=gamma, cache_size=500, random_state=self.seed)

    def _fast(self, svc: Any) -> Any:
        from pipeline.models.svm_fast import FastSVC

        dev = "cpu"
        if str(self.device).startswith("cuda"):
            try:
                import torch

                dev = self.device if torch.cuda.is_available() else "cpu"
            except ImportError:
                pass
        return FastSVC(svc, device=dev)

    def _score(self, svc: Any, X: np.ndarray, y: np.ndarray) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(y, self._fast(svc).predict(X), average="macro"))

    def _fit_features(self, X, y, train, validation) -> None:
        s = self.settings
        classes = np.unique(y)
        if len(classes) < 2:
            raise InputError(f"{self.name}: training data has only one class ({classes.tolist()}); an SVM needs two")
        self.mean_ = X.mean(axis=0).astype(np.float32)
        sd = X.std(axis=0)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        Xs = (X - self.mean_) / self.scale_
        cap = int(s.max_train_samples)
        idx = stratified_cap(y, cap, self.seed)
        groups = np.asarray(train.groups)
        Xc, yc, gc = Xs[idx], y[idx], groups[idx]
        self.fit_info.update(
            train_cap_applied=bool(len(idx) < len(y)),
            max_train_samples=cap,
            n_train_original=int(len(y)),
            n_train_used=int(len(idx)),
        )
        grid = [(float(C), g) for C in s.C for g in s.gamma]
        scores: list[dict] = []
        method = "none"
        if len(grid) > 1:
            if validation is not None and len(validation) > 0 and len(np.unique(validation.y)) >= 2:
                method = "validation"
                Xv = (self.features_from_patches(validation.patches) - self.mean_) / self.scale_
                for C, g in grid:
                    check_cancelled()  # a grid of SVC fits can take minutes: stop between candidates
                    svc = self._svc(C, g).fit(Xc, yc)
                    scores.append({"C": C, "gamma": g, "macro_f1": self._score(svc, Xv, validation.y)})
            else:
                from sklearn.model_selection import GroupKFold, StratifiedKFold

                if len(np.unique(gc)) >= 3:
                    method = "group_kfold_3"
                    splits = list(GroupKFold(n_splits=3).split(Xc, yc, gc))
                else:
                    method = "stratified_kfold_3"
                    splits = list(StratifiedKFold(n_splits=3, shuffle=True, random_state=self.seed).split(Xc, yc))
                for C, g in grid:
                    check_cancelled()  # a grid of SVC fits can take minutes: stop between candidates
                    fold = []
                    for tr, te in splits:
                        if len(np.unique(yc[tr])) < 2:
                            continue
                        svc = self._svc(C, g).fit(Xc[tr], yc[tr])
                        fold.append(self._score(svc, Xc[te], yc[te]))
                    scores.append({"C": C, "gamma": g, "macro_f1": float(np.mean(fold)) if fold else float("nan")})
            best = max(range(len(grid)), key=lambda i: (np.nan_to_num(scores[i]["macro_f1"], nan=-1.0), -i))
            C, g = grid[best]
        else:
            C, g = grid[0]
        self.estimator = self._svc(C, g).fit(Xc, yc)
        self.fast = self._fast(self.estimator)
        self.fit_info.update(
            C=C,
            gamma=g,
            gamma_value=float(self.estimator._gamma),
            selection=method,
            selection_scores=scores,
            n_support_vectors=int(len(self.estimator.support_vectors_)),
            confidence="ovo_vote_share",
            hyperparameters={
                "C": C,
                "gamma": g if g != "scale" else f"scale ({float(self.estimator._gamma):.4g})",
                "support vectors": int(len(self.estimator.support_vectors_)),
                "chosen by": method,
            },
        )

    def _after_load(self) -> None:
        self.fast = self._fast(self.estimator)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32, copy=False)

    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.fast is None:
            self.fast = self._fast(self.estimator)
        labels, conf = self.fast.predict_with_confidence(self._scaled(X))
        return labels.astype(np.int64), conf

    def predict_sklearn(self, X: np.ndarray) -> np.ndarray:
        """Labels from ``SVC.predict`` on features ``X`` (reference for the fast path)."""
        return self.estimator.predict(self._scaled(X)).astype(np.int64)
