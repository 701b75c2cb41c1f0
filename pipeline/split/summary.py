"""What every split strategy reports: per-class counts, the classes missing from train or test,
fold positions, and the independent leakage audit scene by scene.

:func:`as_given` turns the labels of a split that is reported but not enforced (``random``,
``predefined``) into a :class:`~pipeline.split.types.SplitResult`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.split.assign import SPLIT_NAMES
from pipeline.split.audit import audit_split
from pipeline.split.outputs import group_frame
from pipeline.split.types import Fold, SplitInput, SplitResult

__all__ = ["as_given", "audit_labels", "audit_scenes", "class_counts", "fold_of", "merge_audits", "missing_classes"]


def class_counts(labels: np.ndarray, cls: np.ndarray, names: list[str]) -> dict[str, dict[str, int]]:
    """``{split: {class name: samples}}`` for train, validation and test (``labels``, ``cls``: shape (n,))."""
    out: dict[str, dict[str, int]] = {}
    for s in SPLIT_NAMES:
        bc = np.bincount(cls[labels == s], minlength=len(names))
        out[s] = {names[i]: int(bc[i]) for i in range(len(names))}
    return out


def missing_classes(counts: dict[str, dict[str, int]]) -> dict[str, list[str]]:
    """The classes without a sample in train, and in test (the report's ``missing_classes``)."""
    return {s: [c for c, n in counts[s].items() if n == 0] for s in ("train", "test")}


def fold_of(labels: np.ndarray) -> Fold:
    """The :class:`~pipeline.split.types.Fold` of per-sample split labels (shape (n,))."""
    return Fold(
        train=np.flatnonzero(labels == "train").astype(np.int64),
        validation=np.flatnonzero(labels == "validation").astype(np.int64),
        test=np.flatnonzero(labels == "test").astype(np.int64),
    )


def merge_audits(audits: list[dict]) -> dict:
    """One audit of several (scenes, folds): counts added up, the smallest train/test distance."""
    dists = [a["min_train_test_distance"] for a in audits if a["min_train_test_distance"] is not None]
    out: dict[str, Any] = {"min_train_test_distance": min(dists) if dists else None}
    for k in audits[0]:
        if k != "min_train_test_distance":
            out[k] = int(sum(a[k] for a in audits))
    return out


def audit_scenes(xy: np.ndarray, res: tuple[float, float], patch_size: int, fold: Fold, scene: Any = None) -> dict:
    """The independent leakage audit (:func:`pipeline.split.audit.audit_split`) of ``fold``, scene by
    scene: pixels of two scenes (two dates of one place) are never compared.

    Parameters
    ----------
    xy : ndarray, shape (n, 2)
    res : (float, float)
    patch_size : int
    fold : Fold
        Positions into ``xy``.
    scene : array_like, shape (n,), optional
        Scene of each sample; None: one scene.
    """
    codes = np.zeros(len(xy), dtype=np.int64) if scene is None else pd.factorize(np.asarray(scene))[0]
    audits = []
    for sc in np.unique(codes) if len(codes) else [0]:
        keep = {
            k: np.asarray(getattr(fold, k))[codes[np.asarray(getattr(fold, k), dtype=np.int64)] == sc]
            for k in ("train", "validation", "test")
        }
        audits.append(audit_split(xy, res, patch_size, keep["train"], keep["test"], keep["validation"]))
    return merge_audits(audits)


def audit_labels(inp: SplitInput, labels: np.ndarray) -> dict:
    """The leakage audit of one assignment (labels: shape (n,)), scene by scene."""
    return audit_scenes(inp.xy, (inp.rx, inp.ry), inp.patch_size, fold_of(labels), inp.scene)


def as_given(inp: SplitInput, strategy: str, labels: np.ndarray, extra: dict) -> SplitResult:
    """A split that is reported but not enforced (random, predefined): audit, counts, group squares."""
    counts = class_counts(labels, inp.cls, inp.names)
    audit = audit_labels(inp, labels)
    report = {
        "strategy": strategy,
        "block_size": None,
        "buffer": None,
        "seed": int(inp.seed),
        "counts": counts,
        "dropped_by_buffer": 0,
        "missing_classes": missing_classes(counts),
        "audit": audit,
        "group_by": None,
        "sub_blocked_classes": [],
        **extra,
    }
    gdf = group_frame(inp.xy, inp.groups, labels, inp.rx, inp.ry, inp.crs)
    return SplitResult(
        strategy, [fold_of(labels)], labels, np.zeros(inp.n, dtype=np.int64), inp.groups.copy(), gdf, report
    )
