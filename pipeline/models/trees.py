"""Tree baselines: scikit-learn decision tree and random forest, predicted by compiled kernels.

Both find their leaves with the Numba kernels of :mod:`pipeline.models.tree_infer` (the trees
repacked on first use, never saved). The decision tree's confidence comes from the training
class frequencies of its leaves or their ancestors (:func:`confidence_nodes`); the forest's is
its mean tree vote. Features, fitting and the saved form are those of
:class:`~pipeline.models.classical.SklearnPixelModel`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.tree import DecisionTreeClassifier

from pipeline.models.classical import SklearnPixelModel


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
            hyperparameters={"depth": int(self.estimator.get_depth()), "leaves": int(self.estimator.get_n_leaves())},
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
        depths = [int(t.get_depth()) for t in self.estimator.estimators_]
        self.fit_info.update(
            n_estimators=int(self.settings.n_estimators),
            n_jobs=int(self.settings.n_jobs),
            hyperparameters={
                "trees": len(depths),
                "depth (deepest tree)": max(depths),
                "max_depth": self.settings.max_depth,
            },
        )

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
