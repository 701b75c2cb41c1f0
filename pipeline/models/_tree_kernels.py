"""Numba kernels of :mod:`pipeline.models.tree_infer` (see there for the node layout).

Kept in their own module, imported on first use: importing it imports Numba and compiles the
kernels (or loads them from Numba's on-disk cache). Node, leaf and row indices are unsigned
(uint32): Numba then indexes without the test for negative (wrap-around) indices, which
halved the kernel's time."""

import numba as nb
import numpy as np

from pipeline.models._tree_layout import GROUP, STEPS


@nb.njit(nogil=True, cache=True, inline="always")
def descend(X, a, m, feat, thr, base, root, min_depth, idx, act):  # pragma: no cover - compiled
    """Walk rows ``a .. a+m`` of ``X`` down the tree at ``root``; ``idx[i]`` ends at row a+i's leaf."""
    for i in range(m):
        idx[i] = root
    for _ in range(min_depth):  # every row is still inside the tree: no bookkeeping
        for i in range(m):
            j = idx[i]
            idx[i] = base[j] + (X[a + i, feat[j]] > thr[j])
    na = 0
    for i in range(m):  # rows not yet at a leaf (a leaf is its own base), listed without a branch
        act[na] = i
        na += base[idx[i]] != idx[i]
    while na > 0:
        for _ in range(STEPS):
            for q in range(na):
                i = act[q]
                j = idx[i]
                idx[i] = base[j] + (X[a + i, feat[j]] > thr[j])
        nn = 0
        for q in range(na):
            i = act[q]
            act[nn] = i
            nn += base[idx[i]] != idx[i]
        na = nn


@nb.njit(nogil=True, cache=True)
def _argmax_rows(acc, n, n_trees, offset, lab, conf):  # pragma: no cover - compiled
    """Rows ``0 .. n`` of the summed class scores ``acc``: the first class of the highest mean
    (``predict_proba``'s tie rule) into ``lab[offset + i]`` and that mean into ``conf``."""
    for i in range(n):
        best = 0
        top = acc[i, 0] / n_trees
        for c in range(1, acc.shape[1]):
            p = acc[i, c] / n_trees
            if p > top:
                top = p
                best = c
        lab[offset + i] = best
        conf[offset + i] = top


@nb.njit(nogil=True, cache=True)
def forest_argmax(
    X, start, stop, chunk, feat, thr, base, leaf_slot, leaf_value, roots, min_depth, lab, conf
):  # pragma: no cover - compiled
    """Rows ``start .. stop``: argmax and max of the mean of the trees' leaf values.

    Rows go ``chunk`` at a time, and within a chunk tree by tree, so that one tree's nodes
    stay in the core's cache while the chunk's rows descend it."""
    k = leaf_value.shape[1]
    n_trees = roots.shape[0]
    acc = np.zeros((chunk, k))
    idx = np.empty(GROUP, np.uint32)
    act = np.empty(GROUP, np.uint32)
    for c0 in range(start, stop, chunk):
        c1 = min(stop, c0 + chunk)
        acc[:] = 0.0
        for t in range(n_trees):  # in tree order: the same float64 sums as predict_proba
            for a in range(c0, c1, GROUP):
                m = min(GROUP, c1 - a)
                descend(X, a, m, feat, thr, base, roots[t], min_depth[t], idx, act)
                for i in range(m):
                    s = leaf_slot[idx[i]]
                    for c in range(k):
                        acc[a - c0 + i, c] += leaf_value[s, c]
        _argmax_rows(acc, c1 - c0, n_trees, c0, lab, conf)


@nb.njit(nogil=True, cache=True)
def forest_votes(
    X, start, stop, chunk, feat, thr, base, leaf_slot, leaf_class, n_classes, roots, min_depth, lab, conf
):  # pragma: no cover - compiled
    """:func:`forest_argmax` for a forest whose every leaf holds one class (fraction 1, the others
    0, as fully grown trees have): one vote per tree, ``leaf_class`` of each leaf slot. The sums
    are whole numbers, exact in float64 whatever the order, so they equal ``predict_proba``'s."""
    n_trees = roots.shape[0]
    acc = np.zeros((chunk, n_classes))
    idx = np.empty(GROUP, np.uint32)
    act = np.empty(GROUP, np.uint32)
    for c0 in range(start, stop, chunk):
        c1 = min(stop, c0 + chunk)
        acc[:] = 0.0
        for t in range(n_trees):
            for a in range(c0, c1, GROUP):
                m = min(GROUP, c1 - a)
                descend(X, a, m, feat, thr, base, roots[t], min_depth[t], idx, act)
                for i in range(m):
                    acc[a - c0 + i, leaf_class[leaf_slot[idx[i]]]] += 1.0
        _argmax_rows(acc, c1 - c0, n_trees, c0, lab, conf)


@nb.njit(nogil=True, cache=True)
def tree_leaves(X, start, stop, feat, thr, base, leaf_slot, root, min_depth, out):  # pragma: no cover - compiled
    """Rows ``start .. stop``: the leaf slot of each row in the tree at ``root``."""
    idx = np.empty(GROUP, np.uint32)
    act = np.empty(GROUP, np.uint32)
    for a in range(start, stop, GROUP):
        m = min(GROUP, stop - a)
        descend(X, a, m, feat, thr, base, root, min_depth, idx, act)
        for i in range(m):
            out[a + i] = leaf_slot[idx[i]]


@nb.njit(nogil=True, cache=True)
def tree_lookup(
    X, start, stop, feat, thr, base, leaf_slot, root, min_depth, slot_label, slot_conf, lab, conf
):  # pragma: no cover - compiled
    """Rows ``start .. stop``: ``slot_label`` and ``slot_conf`` of each row's leaf in the tree at ``root``."""
    idx = np.empty(GROUP, np.uint32)
    act = np.empty(GROUP, np.uint32)
    for a in range(start, stop, GROUP):
        m = min(GROUP, stop - a)
        descend(X, a, m, feat, thr, base, root, min_depth, idx, act)
        for i in range(m):
            s = leaf_slot[idx[i]]
            lab[a + i] = slot_label[s]
            conf[a + i] = slot_conf[s]


@nb.njit(nogil=True, cache=True, inline="always")
def descend_columns(XT, fill, a, m, feat, thr, base, root, min_depth, idx, act):  # pragma: no cover - compiled
    """:func:`descend` over ``XT`` = features x rows (a window's band planes, read in place), a
    value that is not finite read as ``fill`` (as :mod:`pipeline.sampling.features` fills it)."""
    for i in range(m):
        idx[i] = root
    for _ in range(min_depth):
        for i in range(m):
            j = idx[i]
            x = XT[feat[j], a + i]
            x = x if x - x == 0 else fill  # x - x is NaN for NaN and +-inf
            idx[i] = base[j] + (x > thr[j])
    na = 0
    for i in range(m):
        act[na] = i
        na += base[idx[i]] != idx[i]
    while na > 0:
        for _ in range(STEPS):
            for q in range(na):
                i = act[q]
                j = idx[i]
                x = XT[feat[j], a + i]
                x = x if x - x == 0 else fill
                idx[i] = base[j] + (x > thr[j])
        nn = 0
        for q in range(na):
            i = act[q]
            act[nn] = i
            nn += base[idx[i]] != idx[i]
        na = nn


@nb.njit(nogil=True, cache=True)
def tree_lookup_columns(
    XT, fill, start, stop, feat, thr, base, leaf_slot, root, min_depth, slot_label, slot_conf, lab, conf
):  # pragma: no cover - compiled
    """:func:`tree_lookup` over columns ``start .. stop`` of ``XT`` (features x rows)."""
    idx = np.empty(GROUP, np.uint32)
    act = np.empty(GROUP, np.uint32)
    for a in range(start, stop, GROUP):
        m = min(GROUP, stop - a)
        descend_columns(XT, fill, a, m, feat, thr, base, root, min_depth, idx, act)
        for i in range(m):
            s = leaf_slot[idx[i]]
            lab[a + i] = slot_label[s]
            conf[a + i] = slot_conf[s]


@nb.njit(nogil=True, cache=True)
def boost_argmax(
    X, start, stop, chunk, feat, thr, base, leaf_slot, leaf_score, tree_class, n_scores, roots, min_depth, lab, conf
):  # pragma: no cover - compiled
    """Rows ``start .. stop`` of a gradient-boosted ensemble: each tree adds its leaf's score to
    its class's raw score (``tree_class``), in tree order from 0, as LightGBM's ``PredictRaw``;
    then LightGBM's own transform: softmax over ``n_scores`` classes (max subtracted, ``exp``,
    divided by the sum), or for one score (binary) the sigmoid ``p``, classes ``[1 - p, p]``.
    ``lab``: the first class of the highest probability (``argmax``), ``conf``: that probability."""
    n_trees = roots.shape[0]
    acc = np.zeros((chunk, n_scores))
    idx = np.empty(GROUP, np.uint32)
    act = np.empty(GROUP, np.uint32)
    e = np.empty(n_scores)
    for c0 in range(start, stop, chunk):
        c1 = min(stop, c0 + chunk)
        acc[:] = 0.0
        for t in range(n_trees):
            k = tree_class[t]
            for a in range(c0, c1, GROUP):
                m = min(GROUP, c1 - a)
                descend(X, a, m, feat, thr, base, roots[t], min_depth[t], idx, act)
                for i in range(m):
                    acc[a - c0 + i, k] += leaf_score[leaf_slot[idx[i]]]
        for i in range(c1 - c0):
            if n_scores == 1:
                p = 1.0 / (1.0 + np.exp(-acc[i, 0]))
                q = 1.0 - p
                lab[c0 + i] = 1 if p > q else 0
                conf[c0 + i] = p if p > q else q
                continue
            wmax = acc[i, 0]
            for c in range(1, n_scores):
                wmax = max(acc[i, c], wmax)
            wsum = 0.0
            for c in range(n_scores):
                e[c] = np.exp(acc[i, c] - wmax)
                wsum += e[c]
            best = 0
            top = e[0] / wsum
            for c in range(1, n_scores):
                pc = e[c] / wsum
                if pc > top:
                    top = pc
                    best = c
            lab[c0 + i] = best
            conf[c0 + i] = top
