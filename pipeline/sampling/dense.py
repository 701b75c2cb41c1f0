"""Sampling of dense labels: a cap per class, drawn after the split, spatially balanced.

A reference map used as labels has millions of labelled pixels; making every one a stored
patch makes memory and disk grow with the labelled area. With sampling on, the pipeline
keeps at most ``sampling.max_per_class`` training samples per class (validation and test
in proportion to the split fractions), in three steps:

1. **Lattice thinning before the split** (:func:`thinning_strides`, only for classes with
   more than ``PRESPLIT_FACTOR x max_per_class`` pixels): a class keeps the pixels whose
   row and column are multiples of its stride. The lattice is uniform over the scene, so
   every polygon, block and region keeps its share of that class and the split sees the
   labelled area's layout at a coarser spacing; it only bounds what the split engine holds.
2. **The split** is decided as without sampling (blocks, buffer, audit).
3. **The cap after the split** (:func:`sample_after_split`): per class and per split (per
   test fold for ``kfold``), the cap is shared out as evenly as possible across the blocks
   that hold the class (a block with fewer pixels gives all it has, the rest go to the
   others), and each block's share is drawn at random within the block. The test set thus
   keeps the spatial design of the split: the same blocks, each represented.

The leakage audit is recomputed on the samples kept (a subset of an audited split cannot
gain contacts; :func:`apply_sampling` checks it anyway). Class areas and area-adjusted
accuracy come from the maps, so they still count the full labelled and mapped area; the
record (:func:`apply_sampling`'s ``report``) gives labelled, thinned and kept counts per
class and split.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from pipeline.sampling.settings import SamplingConfig
from pipeline.split.audit import check_no_leak
from pipeline.split.settings import SplitConfig
from pipeline.split.summary import audit_scenes

log = logging.getLogger(__name__)

#: Per-class pixels the split engine receives at most (as a multiple of the cap), before the cap.
PRESPLIT_FACTOR = 10
SPLITS = ("train", "validation", "test")


def decide(cfg: SamplingConfig, n_labelled: int, bytes_per_sample: int) -> tuple[bool, str]:
    """Whether sampling is on for ``n_labelled`` pixels, and why (for the console and the record)."""
    store_mb = n_labelled * bytes_per_sample / 2**20
    if cfg.mode == "off":
        return False, "sampling.mode is off"
    if cfg.mode == "on":
        return True, "sampling.mode is on"
    if n_labelled > cfg.auto_above_pixels:
        return True, f"{n_labelled:,} labelled pixels exceed sampling.auto_above_pixels={cfg.auto_above_pixels:,}"
    if store_mb > cfg.auto_above_store_mb:
        return True, (
            f"the patch store of all {n_labelled:,} labelled pixels would take {store_mb:,.0f} MB, "
            f"more than sampling.auto_above_store_mb={cfg.auto_above_store_mb:g}"
        )
    return False, f"{n_labelled:,} labelled pixels ({store_mb:,.0f} MB of patches) fit without sampling"


def thinning_strides(class_counts: dict[int, int], max_per_class: int) -> dict[int, int]:
    """Lattice stride per class id: 1 (keep all) unless the class exceeds the pre-split budget."""
    budget = PRESPLIT_FACTOR * max_per_class
    return {c: (1 if n <= budget else int(math.ceil(math.sqrt(n / budget)))) for c, n in class_counts.items()}


def thin_mask(rows: np.ndarray, cols: np.ndarray, class_ids: np.ndarray, strides: dict[int, int]) -> np.ndarray:
    """(n,) bool: pixels on their class's lattice (rows and cols multiples of the stride)."""
    keep = np.ones(len(rows), dtype=bool)
    for c, s in strides.items():
        if s > 1:
            m = class_ids == c
            keep[m] = (rows[m] % s == 0) & (cols[m] % s == 0)
    return keep


def caps(cfg: SamplingConfig, split: SplitConfig) -> dict[str, int]:
    """Samples per class and stratum: ``train`` gets the cap, validation and test their share of it
    in proportion to the split fractions; kfold: each test fold (stratum ``fold<i>``) gets
    cap / (k - 1), so that every fold's training part holds about the cap."""
    m = cfg.max_per_class
    if split.strategy == "kfold":
        return {"fold": int(math.ceil(m / (int(split.k) - 1)))}
    fr = split.fractions
    return {
        "train": m,
        "validation": int(math.ceil(m * fr.validation / fr.train)),
        "test": int(math.ceil(m * fr.test / fr.train)),
    }


def balanced_take(blocks: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (into ``blocks``) of at most ``cap`` items, shared out evenly across block ids.

    Water-filling: blocks with fewer items than their share give all of them; the rest of the
    cap is shared among the others (remainders to blocks in random order). Within a block the
    items are drawn uniformly at random. Returns sorted positions.
    """
    n = len(blocks)
    if n <= cap:
        return np.arange(n, dtype=np.int64)
    ids, inv, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    take = np.zeros(len(ids), dtype=np.int64)
    left, open_ = cap, np.ones(len(ids), dtype=bool)
    while left > 0 and open_.any():
        share = left // int(open_.sum())
        small = open_ & (counts - take <= share)
        if small.any():  # these give everything they have
            left -= int((counts[small] - take[small]).sum())
            take[small] = counts[small]
            open_ &= ~small
            continue
        take[open_] += share
        left -= share * int(open_.sum())
        if left:  # remainder: one more for `left` random open blocks
            extra = rng.permutation(np.flatnonzero(open_))[:left]
            take[extra] += 1
            left = 0
    order = np.argsort(inv, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = [rng.choice(order[s : s + c], size=t, replace=False) for s, c, t in zip(starts, counts, take) if t]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def sample_after_split(samples: pd.DataFrame, result: Any, cap: dict[str, int], seed: int) -> np.ndarray:
    """Sorted positions of the samples kept: per class and stratum (split, or test fold for kfold)
    at most the stratum's cap, balanced across blocks. Samples excluded by the buffer (outside
    every fold) are dropped."""
    rng = np.random.default_rng([seed, 17])
    strata = (
        np.asarray(result.split).astype(str)
        if result.strategy != "kfold"
        else np.array([f"fold{f}" for f in result.fold])
    )
    cls = samples["class_id"].to_numpy()
    block = np.asarray(result.block)
    used = np.zeros(len(samples), dtype=bool)
    for f in result.folds:
        for part in (f.train, f.validation, f.test):
            used[part] = True
    keep: list[np.ndarray] = []
    for s in np.unique(strata[used]):
        limit = cap["fold"] if s.startswith("fold") else cap.get(s)
        if limit is None:
            continue
        for c in np.unique(cls[used & (strata == s)]):
            pos = np.flatnonzero(used & (strata == s) & (cls == c))
            keep.append(pos[balanced_take(block[pos], int(limit), rng)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _counts(labels: np.ndarray, names: np.ndarray, classes: list[str]) -> dict[str, dict[str, int]]:
    return {s: {c: int(np.sum((labels == s) & (names == c))) for c in classes} for s in SPLITS}


def apply_sampling(
    samples: pd.DataFrame,
    result: Any,
    cfg: SamplingConfig,
    split_cfg: SplitConfig,
    patch_size: int,
    res: tuple[float, float],
    seed: int,
    classes: list[str],
    record: dict[str, Any],
) -> tuple[pd.DataFrame, Any, dict[str, Any]]:
    """Keep the capped sample of a split: the sampled table, the split restricted to it (folds
    re-indexed, audit recomputed on the kept samples and enforced for blocks/kfold), and the
    sampling record (``record`` from ingestion, completed with caps and per-split counts)."""
    cap = caps(cfg, split_cfg)
    keep = sample_after_split(samples, result, cap, seed)
    n = len(samples)
    new = np.full(n, -1, dtype=np.int64)
    new[keep] = np.arange(len(keep))

    def remap(idx: np.ndarray) -> np.ndarray:
        m = new[idx]
        return m[m >= 0]

    folds = [type(f)(remap(f.train), remap(f.validation), remap(f.test)) for f in result.folds]
    xy = samples[["x", "y"]].to_numpy(np.float64)[keep]
    scene = samples["scene"].to_numpy()[keep] if "scene" in samples.columns else None
    audits = [audit_scenes(xy, res, patch_size, f, scene) for f in folds]  # never across two scenes
    if result.strategy in ("blocks", "kfold"):  # random and predefined splits are reported, not enforced
        for i, a in enumerate(audits):
            check_no_leak(a, f"split after sampling{f' (fold {i})' if len(audits) > 1 else ''}")
    audit = (
        audits[0]
        if len(audits) == 1
        else {
            "min_train_test_distance": min(
                (a["min_train_test_distance"] for a in audits if a["min_train_test_distance"] is not None), default=None
            ),
            **{k: int(sum(a[k] for a in audits)) for k in audits[0] if k != "min_train_test_distance"},
        }
    )
    names = samples["class_name"].to_numpy()
    labels = np.asarray(result.split).astype(str)
    before = _counts(labels, names, classes)
    after = _counts(labels[keep], names[keep], classes)
    rec = {
        **record,
        "active": True,
        "caps": cap,
        "split_counts_before": before,
        "split_counts_after": after,
        "samples_before": int(n),
        "samples_after": int(len(keep)),
        "audit_after_sampling": audit,
    }
    report = dict(result.report)
    report["counts_before_sampling"] = report.get("counts")
    report["audit_before_sampling"] = report.get("audit")
    report["counts"] = after
    report["audit"] = audit
    report["sampling"] = rec
    sub = dataclasses.replace(
        result,
        folds=folds,
        split=np.asarray(result.split)[keep],
        fold=np.asarray(result.fold)[keep],
        block=np.asarray(result.block)[keep],
        report=report,
        fold_splits=[np.asarray(f)[keep] for f in result.fold_splits],
    )
    return samples.iloc[keep].reset_index(drop=True), sub, rec


def console_line(rec: dict[str, Any]) -> str:
    """One line saying what was sampled."""
    lab = sum(rec["labelled_per_class"].values())
    cap = rec["caps"]
    capt = (
        (
            f"at most {cap['train']:,} training / {cap['validation']:,} validation / {cap['test']:,} test samples "
            "per class"
        )
        if "train" in cap
        else f"at most {cap['fold']:,} samples per class and fold"
    )
    thinned = {k: v for k, v in rec.get("thinning_stride", {}).items() if v > 1}
    th = (
        "; before the split, " + ", ".join(f"{k} on a {v}-pixel lattice" for k, v in thinned.items()) if thinned else ""
    )
    return (
        f"sampling: {rec['reason']}; kept {rec['samples_after']:,} of {lab:,} labelled pixels, {capt}, "
        f"spread over the split's blocks{th} (sampling.mode: off to use every pixel)"
    )
