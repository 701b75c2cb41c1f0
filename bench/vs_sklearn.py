"""The fast prediction paths against scikit-learn on the same pixels: speed and agreement.

Part of ``landcover bench baselines``: :func:`svm_vs_sklearn` times ``SVC.predict`` against
:class:`pipeline.models.svm_fast.FastSVC`, :func:`trees_vs_sklearn` the trees' ``predict_proba``
against the compiled kernels of :mod:`pipeline.models.tree_infer`, both on in-memory features
of one strip of the raster, in interleaved repeats of alternating order, and both report the
share of identical labels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def _strip_features(model: Any, raster: Path, n_pixels: int) -> np.ndarray:
    """The model's features of up to ``n_pixels`` valid pixels of a strip of whole rows across the
    middle of ``raster``."""
    from rasterio.windows import Window

    from pipeline.inputs.raster import RasterStack

    with RasterStack.open(raster) as stack:
        size = stack.grid.width
        rows = max(1, min(stack.grid.height, -(-n_pixels // size)))
        r0 = (stack.grid.height - rows) // 2
        block = stack.read(Window(0, r0, size, rows))
    X = model.features_from_block(block)
    return X[np.all(np.isfinite(block.reshape(block.shape[0], -1)), axis=0)][:n_pixels]


def svm_vs_sklearn(model_path: Path, raster: Path, n_pixels: int, repeats: int = 3) -> dict:
    """``SVC.predict`` against the fast path on the same pixels, ``repeats`` times interleaved
    (the order alternates), so that load from other processes hits both alike; rates and the
    speed-up are medians, the speed-up of each repeat from its own pair of timings."""
    from pipeline.models import load_model

    model = load_model(model_path)
    X = _strip_features(model, raster, n_pixels)
    Xs = model._scaled(X)
    model.fast.predict(Xs[:2048])  # warm-up (thread pool, BLAS)
    t_sk, t_fast = [], []
    ref = fast = None
    for r in range(max(1, repeats)):
        for which in ("sk", "fast") if r % 2 == 0 else ("fast", "sk"):
            t0 = time.perf_counter()
            if which == "sk":
                ref = model.estimator.predict(Xs)
                t_sk.append(time.perf_counter() - t0)
            else:
                fast, _ = model.fast.predict_with_confidence(Xs)
                t_fast.append(time.perf_counter() - t0)
    return {
        **_against_sklearn(len(X), t_sk, t_fast, fast, ref),
        "n_support_vectors": int(len(model.estimator.support_vectors_)),
    }


def _against_sklearn(n: int, t_sk: list[float], t_fast: list[float], fast: Any, ref: Any) -> dict[str, Any]:
    """Speed and agreement of a fast path against scikit-learn on the same ``n`` pixels: medians of
    the interleaved repeats' times, and the median of each repeat's own ratio."""
    ratios = [a / b for a, b in zip(t_sk, t_fast)]
    return {
        "n_pixels_compared": int(n),
        "repeats": len(t_sk),
        "sklearn_mpx_per_s": n / 1e6 / float(np.median(t_sk)),
        "fast_mpx_per_s": n / 1e6 / float(np.median(t_fast)),
        "speedup_vs_sklearn": float(np.median(ratios)),
        "speedup_per_repeat": ratios,
        "sklearn_seconds_all": t_sk,
        "fast_seconds_all": t_fast,
        "label_agreement": float(np.mean(fast == ref)),
        "n_label_differences": int(np.sum(fast != ref)),
    }


def trees_vs_sklearn(model_path: Path, raster: Path, n_pixels: int, repeats: int = 3) -> dict:
    """The random forest's ``predict_proba`` (or the decision tree's ``predict``), as fitted
    (the forest with its ``n_jobs``), against the compiled path the mapping uses
    (:mod:`pipeline.models.tree_infer`) on the same pixels, ``repeats`` times interleaved in
    alternating order; the speed-up is the median of each repeat's own ratio. Labels are compared
    with sklearn's (``classes_[argmax(predict_proba)]``, i.e. ``predict``), the forest's
    confidence with ``predict_proba``'s row maximum."""
    from pipeline.models import load_model

    model = load_model(model_path)
    if model.name == "gradient_boosting":
        return _boosting_vs_lightgbm(model, raster, n_pixels, repeats)
    est = model.estimator
    forest = hasattr(est, "estimators_")
    X = _strip_features(model, raster, n_pixels)
    model._predict_features(X[:2048])  # warm-up: compiled kernels loaded, trees packed
    t_sk, t_fast = [], []
    ref = fast = conf = proba = None
    for r in range(max(1, repeats)):
        for which in ("sk", "fast") if r % 2 == 0 else ("fast", "sk"):
            t0 = time.perf_counter()
            if which == "sk":
                proba = est.predict_proba(X)
                t_sk.append(time.perf_counter() - t0)
            else:
                fast, conf = model._predict_features(X)
                t_fast.append(time.perf_counter() - t0)
    assert proba is not None and fast is not None and conf is not None
    ref = np.asarray(est.classes_)[np.argmax(proba, axis=1)]
    out = {
        "reference": "RandomForestClassifier.predict_proba" if forest else "DecisionTreeClassifier.predict_proba",
        **_against_sklearn(len(X), t_sk, t_fast, fast, ref),
        "trees": len(est.estimators_) if forest else 1,
        "mean_nodes_per_tree": float(np.mean([e.tree_.node_count for e in getattr(est, "estimators_", [est])])),
        "max_depth": int(max(e.tree_.max_depth for e in getattr(est, "estimators_", [est]))),
    }
    if forest:
        out["n_jobs"] = int(est.n_jobs or 1)
        # the model's confidence is float32: compare in float64 before that rounding too
        idx, conf64 = model._packed_trees.proba_argmax(X, n_threads=out["n_jobs"])
        out["max_confidence_diff"] = float(np.max(np.abs(conf64 - proba.max(axis=1))))
    return out


def _boosting_vs_lightgbm(model: Any, raster: Path, n_pixels: int, repeats: int) -> dict:
    """Gradient boosting: LightGBM's own ``Booster.predict`` (labels its argmax, as
    ``LGBMClassifier.predict``) against the compiled path the mapping uses, both with the model's
    ``n_jobs`` threads, on the same pixels, interleaved in alternating order."""
    X = _strip_features(model, raster, n_pixels)
    model._predict_features(X[:2048])  # warm-up: compiled kernels loaded, trees parsed and packed
    t_lib, t_fast = [], []
    ref = fast = conf = ref_conf = None
    for r in range(max(1, repeats)):
        for which in ("lib", "fast") if r % 2 == 0 else ("fast", "lib"):
            t0 = time.perf_counter()
            if which == "lib":
                ref, ref_conf = model.predict_library(X)
                t_lib.append(time.perf_counter() - t0)
            else:
                fast, conf = model._predict_features(X)
                t_fast.append(time.perf_counter() - t0)
    assert ref is not None and fast is not None and conf is not None and ref_conf is not None
    from pipeline.models.boosting import parse_trees

    parsed = parse_trees(str(model.booster_text_), model.spec.n_features)
    trees = parsed[0] if parsed else []
    compiled = model._compiled()
    return {
        "reference": "lightgbm.Booster.predict",
        **_against_sklearn(len(X), t_lib, t_fast, fast, ref),
        "trees": len(trees),
        "rounds": int(model.fit_info.get("rounds_kept") or 0),
        "mean_nodes_per_tree": float(np.mean([len(t.children_left) for t in trees])) if trees else 0.0,
        "kernel": type(compiled).__name__ if compiled and not isinstance(compiled, tuple) else "PackedTrees (walk)",
        "n_jobs": int(model.settings.n_jobs),
        "max_confidence_diff": float(np.max(np.abs(conf - ref_conf))),
    }
