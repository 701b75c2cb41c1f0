"""Classical per-pixel baselines built on scikit-learn estimators.

All four baselines (decision tree, random forest, RBF SVM, Gaussian maximum
likelihood) classify a pixel from the features of :mod:`pipeline.sampling.features`,
configured per model by ``settings.features`` (band values by default; optional
spectral indices and k x k patch statistics, in which case ``halo = k // 2``).
The same :class:`~pipeline.sampling.features.FeatureSpec` builds features from training
patches and from mapping blocks, so ``predict_block`` equals ``predict_patches``
at every pixel.

Every model fills ``self.fit_info`` (JSON-serialisable: sizes, chosen
hyper-parameters, caps) for the run to copy into ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from pipeline.core.atomic import atomic_path, json_safe
from pipeline.core.cancel import check_cancelled
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
        X = self.features_from_patches(train.patches)
        y = np.asarray(train.y)
        self.fit_info = {
            "n_train": int(len(y)),
            "n_features": int(X.shape[1]),
            "features": self.spec.names(),
            "halo": int(self.halo),
        }
        self._fit_features(X, y, train, validation)
        self.fit_info["fit_seconds"] = round(time.perf_counter() - t0, 3)
        self.fit_info = json_safe(self.fit_info)
        return self

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


def confidence_nodes(tree: Any, min_samples: int) -> np.ndarray:
    """For every node of a fitted sklearn tree, the deepest node on its path from the root
    (itself included) that holds at least ``min_samples`` training samples (the root if none)."""
    left, right, n = tree.children_left, tree.children_right, tree.n_node_samples
    out = np.zeros(tree.node_count, dtype=np.int64)
    for i in range(tree.node_count):  # node ids are in depth-first preorder: a parent comes before its children
        for c in (left[i], right[i]):
            if c >= 0:
                out[c] = c if n[c] >= min_samples else out[i]
    return out


def _packed(model: SklearnPixelModel) -> Any:
    """The model's trees repacked for compiled inference (:class:`~pipeline.models.tree_infer.PackedTrees`),
    built on first use and kept; derived from the estimator, never saved."""
    from pipeline.models.tree_infer import PackedTrees

    packed = getattr(model, "_packed_trees", None)
    if packed is None or packed.source is not model.estimator:
        packed = model._packed_trees = PackedTrees.from_estimator(model.estimator)
    return packed


def _leaves(model: SklearnPixelModel, X: np.ndarray) -> np.ndarray:
    """``model.estimator.apply(X)`` for a decision tree, by the compiled kernel; rows with a NaN
    feature go to scikit-learn, which routes missing values node by node."""
    if not np.isnan(X).any():  # one pass over the flat array: rows are looked at only when needed
        return _packed(model).leaves(X)
    nan = np.isnan(X).any(axis=1)
    leaf = np.empty(len(X), np.int64)
    leaf[~nan] = _packed(model).leaves(X[~nan])
    leaf[nan] = model.estimator.apply(X[nan])
    return leaf


class DecisionTreeModel(SklearnPixelModel):
    """sklearn DecisionTreeClassifier. Labels are the tree's own; leaves are found by the compiled
    kernel of :mod:`pipeline.models.tree_infer` (the leaves of ``apply``).

    Confidence = the training frequency of the predicted class in the pixel's leaf, or, when
    the leaf holds fewer than ``settings.confidence_min_samples`` training samples, in its
    deepest ancestor that holds that many. A fully grown tree's leaves are pure, so their
    own frequencies would make the confidence layer 1 everywhere; the ancestors say how
    mixed the region of feature space around a small leaf is.
    """

    name = "decision_tree"

    def _make_estimator(self) -> DecisionTreeClassifier:
        s = self.settings
        return DecisionTreeClassifier(
            max_depth=s.max_depth, min_samples_leaf=s.min_samples_leaf, random_state=self.seed
        )

    @property
    def confidence_min_samples(self) -> int:
        return int(getattr(self.settings, "confidence_min_samples", 20))

    def _fit_features(self, X, y, train, validation) -> None:
        super()._fit_features(X, y, train, validation)
        self.fit_info.update(
            depth=int(self.estimator.get_depth()),
            n_leaves=int(self.estimator.get_n_leaves()),
            confidence=f"class frequency in leaf or ancestor with >= {self.confidence_min_samples} training samples",
        )

    def _node_answers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per node of the tree: (class id the tree predicts there, confidence), int64 and float32."""
        tree = self.estimator.tree_
        answers = getattr(self, "_conf_nodes", None)
        if answers is None or len(answers[0]) != tree.node_count:  # derived, not saved: rebuilt after loading
            nodes = confidence_nodes(tree, self.confidence_min_samples)
            value = tree.value[:, 0, :]
            frac = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-12)
            idx = np.argmax(value, axis=1)  # the tree's own prediction (DecisionTreeClassifier.predict)
            label = np.asarray(self.estimator.classes_)[idx].astype(np.int64)
            answers = self._conf_nodes = (label, frac[nodes, idx].astype(np.float32))
        return answers

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """With band values as the only features, the kernel reads the window's band planes in
        place (non-finite values as the feature module's fill): no (pixels, features) copy."""
        from pipeline.sampling.features import NAN_FILL

        if self.spec.n_features != self.spec.n_bands or self.halo:
            return super().predict_block(block)
        blk = np.asarray(block, dtype=np.float32)
        if blk.ndim != 3 or blk.shape[0] != self.spec.n_bands:
            raise ValueError(f"block must be ({self.spec.n_bands}, H, W), got {blk.shape}")
        label, conf = self._node_answers()
        packed = _packed(self)
        cols = blk.reshape(blk.shape[0], -1)
        lab, c = packed.leaf_lookup(cols, label[packed.leaf_node], conf[packed.leaf_node], columns=True, fill=NAN_FILL)
        return lab.reshape(blk.shape[1:]), c.reshape(blk.shape[1:])

    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float32)
        label, conf = self._node_answers()
        packed = _packed(self)
        if not np.isnan(X).any():  # the leaves' answers looked up inside the compiled kernel
            return packed.leaf_lookup(X, label[packed.leaf_node], conf[packed.leaf_node])
        leaf = _leaves(self, X)
        return label[leaf], conf[leaf]


class RandomForestModel(SklearnPixelModel):
    """sklearn RandomForestClassifier; confidence = mean tree vote (``predict_proba``).

    Prediction walks the trees with the compiled kernel of :mod:`pipeline.models.tree_infer`
    (labels of ``predict``, confidence ``predict_proba``'s maximum), in ``n_jobs`` threads,
    so the mapper runs one window at a time for it (``map_workers = 1``).
    """

    name = "random_forest"

    def __init__(self, *a: Any, **k: Any):
        super().__init__(*a, **k)
        self.map_workers = 1 if int(getattr(self.settings, "n_jobs", 1)) > 1 else 2

    def _make_estimator(self) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        s = self.settings
        return RandomForestClassifier(
            n_estimators=s.n_estimators,
            max_depth=s.max_depth,
            min_samples_leaf=s.min_samples_leaf,
            n_jobs=s.n_jobs,
            random_state=self.seed,
        )

    def _fit_features(self, X, y, train, validation) -> None:
        super()._fit_features(X, y, train, validation)
        self.fit_info.update(n_estimators=int(self.settings.n_estimators), n_jobs=int(self.settings.n_jobs))

    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and confidence of ``predict_proba`` (same labels, probabilities equal to
        float64 rounding) from the compiled kernel of :mod:`pipeline.models.tree_infer`."""
        X = np.asarray(X, dtype=np.float32)
        threads = int(self.settings.n_jobs)
        if not np.isnan(X).any():  # one pass over the flat array (features never hold NaN)
            idx, conf = _packed(self).proba_argmax(X, n_threads=threads)
        else:  # scikit-learn routes missing values node by node: rows with NaN go to it
            nan = np.isnan(X).any(axis=1)
            idx = np.empty(len(X), np.int64)
            conf = np.empty(len(X), np.float64)
            idx[~nan], conf[~nan] = _packed(self).proba_argmax(X[~nan], n_threads=threads)
            proba = self.estimator.predict_proba(X[nan])
            idx[nan] = np.argmax(proba, axis=1)
            conf[nan] = proba.max(axis=1)
        return np.asarray(self.estimator.classes_)[idx].astype(np.int64), conf.astype(np.float32)


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
        )

    def _estimator_input(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def _predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = self.estimator.predict_proba(self._estimator_input(X))
        return proba_to_labels(proba, self.estimator.classes_)


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


# ----------------------------------------------------------------------------- saved form
# A classical model is saved with skops (a zip of JSON and arrays that loads without running
# code): the fitted estimator and arrays, plus the settings, metadata and fit report as JSON.
# Loading refuses any type outside skops' defaults and this list, so a tampered or foreign
# file is one clear error instead of code run on load. Pickles are never loaded.
SAVE_FORMAT = "landcover-classical/1"
TRUSTED_TYPES = [
    "sklearn.tree._tree.Tree",  # the fitted tree of DecisionTreeClassifier and of each forest tree
    "pipeline.models.gaussian.ShrunkGaussianClassifier",  # our estimator: arrays and floats only
]
# Attributes rebuilt from settings and metadata (or caches), not stored.
_REBUILT = ("settings", "meta", "spec", "device", "fast", "_conf_nodes", "_packed_trees", "fit_info")


def _state(model: SklearnPixelModel) -> dict[str, Any]:
    return {k: v for k, v in model.__dict__.items() if k not in _REBUILT}


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
    with atomic_path(path) as tmp:
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
            if not (isinstance(k, str) and k.isidentifier() and not k.startswith("__")) or k in _REBUILT:
                raise ValueError(f"unexpected attribute {k!r}")
            setattr(model, k, v)
        model.fit_info = json.loads(blob["fit_info"])
        model._after_load()
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever is wrong inside, the file is not a model we saved
        raise InputError(f"{path}: not a saved landcover model ({_first_line(e)})") from None
    return model


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
