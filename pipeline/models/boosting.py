"""Gradient boosting baseline: LightGBM on the per-pixel features, stopped early on the validation groups.

Why LightGBM and not scikit-learn's ``HistGradientBoostingClassifier``: on the demo and the three
shared scenes, with the same features and the same early stopping, the two reached the same
accuracy within the test sets' noise, but LightGBM fitted 3-20x faster and predicted
faster (``docs/benchmarks.md``, "Gradient boosting"); it is also what the field's own
land-cover examples use (eo-learn). Its text model format loads without running code, which
keeps the saved file as safe as the other classical models' (see :func:`load_booster`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.errors import InputError
from pipeline.models.classical import SklearnPixelModel

#: Rounds boosted when no validation group can stop the boosting (none held out, or one class).
ROUNDS_WITHOUT_VALIDATION = 100


def parse_trees(text: str, n_features: int) -> tuple[list[Any], np.ndarray, int] | None:
    """The trees of a LightGBM text model in scikit-learn's node layout, for
    :class:`~pipeline.models.tree_infer.PackedTrees`: (trees, class of each tree, scores per row);
    None when a tree uses what the compiled kernel does not do (categorical splits, zero-as-missing,
    linear leaves), and LightGBM's own ``predict`` must run.

    LightGBM numbers a tree's splits ``0 .. L-2`` and its leaves ``~0 .. ~(L-1)`` (negative
    children); a row goes left when ``x <= threshold``, as in scikit-learn. Missing-value routing
    does not matter here: the features never hold NaN (:mod:`pipeline.sampling.features`).
    """
    from types import SimpleNamespace

    head, _, body = text.partition("\nTree=")
    info = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    per_iteration = int(info.get("num_tree_per_iteration", 1))
    trees = []
    for block in ("Tree=" + body).split("\nTree=") if body else []:
        block = block.split("end of trees", 1)[0]
        kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if int(kv.get("num_cat", 0)) or int(kv.get("is_linear", 0)):
            return None
        n_leaves = int(kv["num_leaves"])
        leaf_value = np.array(kv["leaf_value"].split(), dtype=np.float64)
        n_split = n_leaves - 1
        n_nodes = n_split + n_leaves
        left = np.full(n_nodes, -1, np.int64)
        right = np.full(n_nodes, -1, np.int64)
        feature = np.full(n_nodes, -2, np.int64)
        threshold = np.full(n_nodes, -2.0)
        value = np.zeros((n_nodes, 1, 1))
        value[n_split:, 0, 0] = leaf_value
        if n_split:
            decision = np.array(kv["decision_type"].split(), dtype=np.int64)
            if np.any(decision & 1) or np.any((decision >> 2) & 3 == 1):  # categorical, or zero as missing
                return None
            lc = np.array(kv["left_child"].split(), dtype=np.int64)
            rc = np.array(kv["right_child"].split(), dtype=np.int64)
            left[:n_split] = np.where(lc >= 0, lc, n_split + ~lc)
            right[:n_split] = np.where(rc >= 0, rc, n_split + ~rc)
            feature[:n_split] = np.array(kv["split_feature"].split(), dtype=np.int64)
            threshold[:n_split] = np.array(kv["threshold"].split(), dtype=np.float64)
        trees.append(
            SimpleNamespace(
                children_left=left,
                children_right=right,
                feature=feature,
                threshold=threshold,
                value=value,
                n_features=n_features,
            )
        )
    tree_class = np.arange(len(trees)) % per_iteration
    return trees, tree_class, per_iteration


def load_booster(text: str) -> Any:
    """A LightGBM booster from its text model (``Booster.model_to_string``): parsed, never executed."""
    import lightgbm as lgb

    return lgb.Booster(model_str=text)


class GradientBoostingModel(SklearnPixelModel):
    """LightGBM gradient-boosted trees, one tree per class and round (softmax over classes).

    * Early stopping on the validation split (its groups: polygons or blocks the training never
      saw): boosting stops when the validation multi-class log-loss has not improved for
      ``settings.early_stopping_rounds`` rounds, and the model keeps the best round. Without a
      validation split that holds at least two of the training classes, a seeded fifth of the
      training groups is held out to find the number of rounds, then the model is refitted on
      every training sample with that many; with fewer than 5 groups it boosts
      :data:`ROUNDS_WITHOUT_VALIDATION` rounds. ``fit_info`` says which (``stopping``).
    * Saved as LightGBM's text model inside the ``.skops`` file (a string: no code runs on load);
      the booster is rebuilt from it after loading.
    * Prediction: the compiled kernels of :mod:`pipeline.models.tree_infer` find each row's leaf
      in every tree (:func:`parse_trees`), add the leaf scores in LightGBM's order and apply its
      softmax, so the labels are those of LightGBM's own ``predict`` (the argmax of its
      probabilities, first maximum, as ``LGBMClassifier.predict``) and the confidence is the
      winning class's probability. Trees of at most 32 leaves (the default ``num_leaves`` is
      31) go through the bit-vector kernel (:class:`~pipeline.models.tree_infer.BitvectorTrees`:
      every split tested for 256 pixels at once, no walk: ``landcover bench accuracy`` and
      ``bench baselines`` measure it against the forest, ``docs/benchmarks.md``); larger trees
      are walked by the forest's kernel.
    """

    name = "gradient_boosting"
    _derived = ("estimator",)  # the booster: rebuilt from ``booster_text_``, never saved as an object

    def __init__(self, *a: Any, **k: Any):
        super().__init__(*a, **k)
        self.map_workers = 1 if int(getattr(self.settings, "n_jobs", 1)) > 1 else 2
        self.booster_text_: str | None = None
        self.classes_: np.ndarray | None = None

    def _params(self, n_classes: int) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {
            "learning_rate": s.learning_rate,
            "num_leaves": s.num_leaves,
            "min_child_samples": s.min_child_samples,
            "feature_fraction": s.feature_fraction,
            "lambda_l2": s.l2_regularisation,
            "num_threads": s.n_jobs,
            "seed": self.seed,
            "deterministic": True,  # same model for the same seed and data
            "force_col_wise": True,
            "verbosity": -1,
        }
        if n_classes > 2:
            params.update(objective="multiclass", num_class=n_classes, metric="multi_logloss")
        else:
            params.update(objective="binary", metric="binary_logloss")
        return params

    def _boost(
        self, X: np.ndarray, yi: np.ndarray, n_classes: int, rounds: int, val: tuple[np.ndarray, np.ndarray] | None
    ) -> Any:
        import lightgbm as lgb

        train_set = lgb.Dataset(X, yi, free_raw_data=False)
        kw: dict[str, Any] = {}
        if val is not None:
            kw["valid_sets"] = [lgb.Dataset(val[0], val[1], reference=train_set)]
            kw["callbacks"] = [lgb.early_stopping(self.settings.early_stopping_rounds, verbose=False)]
        return lgb.train(self._params(n_classes), train_set, num_boost_round=rounds, **kw)

    def _fit_features(self, X, y, train, validation) -> None:
        s = self.settings
        classes = np.unique(y)
        if len(classes) < 2:
            raise InputError(f"{self.name}: training data has only one class ({classes.tolist()}); boosting needs two")
        yi = np.searchsorted(classes, y)
        stopping = ""
        booster = None
        if validation is not None and len(validation) > 0:
            Xv = self.features_from_patches(validation.patches)
            keep = np.isin(validation.y, classes)  # a class the training never saw cannot be scored
            if len(np.unique(np.asarray(validation.y)[keep])) >= 2:
                yv = np.searchsorted(classes, np.asarray(validation.y)[keep])
                booster = self._boost(X, yi, len(classes), s.max_rounds, (Xv[keep], yv))
                stopping = f"validation split ({int(keep.sum())} samples)"
        if booster is None:
            held = _held_out_groups(np.asarray(train.groups), yi, self.seed)
            if held is not None:
                fit_rows, val_rows = held
                probe = self._boost(X[fit_rows], yi[fit_rows], len(classes), s.max_rounds, (X[val_rows], yi[val_rows]))
                rounds = max(1, int(probe.best_iteration or probe.current_iteration()))
                booster = self._boost(X, yi, len(classes), rounds, None)
                stopping = (
                    f"held-out fifth of the training groups ({len(val_rows)} samples), refit with {rounds} rounds"
                )
            else:
                booster = self._boost(X, yi, len(classes), min(s.max_rounds, ROUNDS_WITHOUT_VALIDATION), None)
                stopping = f"none (no validation groups): {booster.current_iteration()} rounds"
        best = int(booster.best_iteration or 0) or int(booster.current_iteration())
        # keep only the rounds up to the best: the saved model is what maps, nothing beyond it
        self.booster_text_ = booster.model_to_string(num_iteration=best)
        self.classes_ = classes
        self.estimator = load_booster(self.booster_text_)
        self._packed_trees = None
        self.fit_info.update(
            rounds_kept=best,
            rounds_max=int(s.max_rounds),
            stopping=stopping,
            hyperparameters={
                "rounds kept": best,
                "learning_rate": s.learning_rate,
                "num_leaves": s.num_leaves,
                "early stopping": stopping,
            },
        )

    def _after_load(self) -> None:
        self.estimator = load_booster(str(self.booster_text_))
        self._packed_trees = None

    def _proba(self, X: np.ndarray) -> np.ndarray:
        """(n, f) -> (n, classes) probabilities, columns in the order of ``classes_``."""
        p = self.estimator.predict(np.asarray(X, dtype=np.float32), num_threads=int(self.settings.n_jobs))
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

    def _compiled(self) -> Any:
        """The trees for a compiled kernel, built from the text model on first use (never saved):
        :class:`~pipeline.models.tree_infer.BitvectorTrees` when every tree has at most 32 leaves
        (the default ``num_leaves`` is 31), else (packed trees, class of each tree, scores per
        row) for the tree walk; False when no kernel can run this model."""
        if self._packed_trees is None:
            from pipeline.models.tree_infer import MAX_BITVECTOR_LEAVES, BitvectorTrees, PackedTrees

            parsed = parse_trees(str(self.booster_text_), self.spec.n_features)
            if parsed is None:
                self._packed_trees = False
            elif all(int((t.children_left < 0).sum()) <= MAX_BITVECTOR_LEAVES for t in parsed[0]):
                self._packed_trees = BitvectorTrees(parsed[0], parsed[1], parsed[2])
            else:
                self._packed_trees = (PackedTrees(parsed[0]), parsed[1], parsed[2])
        return self._packed_trees

    def _predict_features(self, X: np.ndarray, columns: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Labels and confidence of LightGBM's ``predict`` (argmax of its probabilities and their
        maximum), by the compiled kernels of :mod:`pipeline.models.tree_infer` (same sums, same
        transform), or by LightGBM itself for rows with NaN or a model no kernel can run.
        ``X``: (n, f) rows, or with ``columns=True`` (f, n) feature planes."""
        from pipeline.models.tree_infer import BitvectorTrees

        assert self.classes_ is not None
        X = np.asarray(X, dtype=np.float32)
        compiled = self._compiled()
        threads = int(self.settings.n_jobs)
        if compiled and not np.isnan(X).any():
            if isinstance(compiled, BitvectorTrees):
                idx, conf = compiled.predict(X, n_threads=threads, columns=columns)
            else:
                packed, tree_class, n_scores = compiled
                idx, conf = packed.boost_argmax(X.T if columns else X, tree_class, n_scores, n_threads=threads)
        else:
            proba = self._proba(X.T if columns else X)
            idx = np.argmax(proba, axis=1)
            conf = proba[np.arange(len(idx)), idx]
        return np.asarray(self.classes_)[idx].astype(np.int64), conf.astype(np.float32)

    def predict_block(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`SklearnPixelModel.predict_block`, from the window's feature planes
        (``FeatureSpec.planes_from_block``), which the bit-vector kernel reads where they are."""
        h, w = block.shape[1] - 2 * self.halo, block.shape[2] - 2 * self.halo
        labels, conf = self._predict_features(self.spec.planes_from_block(block), columns=True)
        return labels.reshape(h, w), conf.reshape(h, w)

    def predict_library(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and confidence from LightGBM's own ``Booster.predict`` on features ``X`` (the
        reference of the compiled path: ``LGBMClassifier.predict`` is the same argmax)."""
        assert self.classes_ is not None
        proba = self._proba(X)
        idx = np.argmax(proba, axis=1)
        return np.asarray(self.classes_)[idx].astype(np.int64), proba[np.arange(len(idx)), idx].astype(np.float32)

    def predict_proba_patches(self, patches: Any) -> np.ndarray:
        """(n, bands, k, k) -> (n, len(meta.class_ids)) probabilities in the order of ``meta.class_ids``."""
        proba = self._proba(self.features_from_patches(patches))
        out = np.zeros((len(proba), len(self.meta.class_ids)), np.float64)
        pos = {int(c): i for i, c in enumerate(self.meta.class_ids)}
        assert self.classes_ is not None
        out[:, [pos[int(c)] for c in self.classes_]] = proba
        return out


def _held_out_groups(groups: np.ndarray, yi: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(fit rows, held-out rows): a seeded fifth of the training groups held out for early stopping,
    or None when there are fewer than 5 groups or either side would miss a class it needs
    (the held-out rows at least two classes, the fit rows every class)."""
    from sklearn.model_selection import GroupShuffleSplit

    if len(np.unique(groups)) < 5:
        return None
    for attempt in range(10):
        fit_rows, val_rows = next(
            GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=seed + attempt).split(yi, yi, groups)
        )
        if len(np.unique(yi[fit_rows])) == len(np.unique(yi)) and len(np.unique(yi[val_rows])) >= 2:
            return fit_rows, val_rows
    return None
