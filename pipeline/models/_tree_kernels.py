"""Numba kernels of :mod:`pipeline.models.tree_infer` (see there for the node layout).

Kept in their own module, imported on first use: importing it imports Numba and compiles the
kernels (or loads them from Numba's on-disk cache). Node, leaf and row indices are unsigned
(uint32): Numba then indexes without the test for negative (wrap-around) indices, which
halved the kernel's time."""

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from pipeline.models._tree_layout import BLOCK, GROUP, STEPS


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


@nb.njit(nogil=True, cache=True, inline="always")
def _label_of_scores(scores, n_scores, e):  # pragma: no cover - compiled
    """(label, confidence) of one row's boosted scores as LightGBM transforms them: the sigmoid of
    a binary model's single score, else the softmax (``e``: scratch of ``n_scores``); ties go to
    the lower class. Shared by both boosting kernels so that their labels cannot drift apart."""
    if n_scores == 1:
        p = 1.0 / (1.0 + np.exp(-scores[0]))
        q = 1.0 - p
        return (1 if p > q else 0), (p if p > q else q)
    wmax = scores[0]
    for c in range(1, n_scores):
        wmax = max(scores[c], wmax)
    wsum = 0.0
    for c in range(n_scores):
        e[c] = np.exp(scores[c] - wmax)
        wsum += e[c]
    best = 0
    top = e[0] / wsum
    for c in range(1, n_scores):
        pc = e[c] / wsum
        if pc > top:
            top = pc
            best = c
    return best, top


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
            lab[c0 + i], conf[c0 + i] = _label_of_scores(acc[i, :], n_scores, e)


_ALL_LEAVES = np.uint32(0xFFFFFFFF)


@nb.njit(nogil=True, cache=True)
def boost_bitvector(
    XT, start, stop, node_start, feat, thr, bits, leaf_start, leaf_score, tree_class, n_scores, lab, conf
):  # pragma: no cover - compiled
    """:func:`boost_argmax` over columns ``start .. stop`` of ``XT`` (features x rows), for trees of
    at most 32 leaves, without walking them: each tree's leaves are numbered left to right and a
    row's 32-bit mask starts with every leaf; every split whose test sends the row right
    (``x > thr``) clears the leaves of its left subtree (``bits``). The row's leaf is the lowest
    leaf left (the exit leaf of QuickScorer, Lucchese et al. 2015). Every split of a tree is
    tested for :data:`BLOCK` rows at once, with no branch and no load that waits for another:
    the loops over rows vectorise. Sums, transform and ties as :func:`boost_argmax`."""
    n_trees = tree_class.shape[0]
    n_feat = XT.shape[0]
    acc = np.zeros((n_scores, BLOCK))
    mask = np.empty(BLOCK, np.uint32)
    xb = np.zeros((n_feat, BLOCK), np.float32)
    e = np.empty(n_scores)
    for b0 in range(start, stop, BLOCK):
        m = min(BLOCK, stop - b0)
        for f in range(n_feat):  # the block's features where the loops below index them from 0
            for p in range(m):
                xb[f, p] = XT[f, b0 + p]
        for c in range(n_scores):
            for p in range(m):
                acc[c, p] = 0.0
        for t in range(n_trees):
            for p in range(m):
                mask[p] = _ALL_LEAVES
            for j in range(node_start[t], node_start[t + 1]):
                f = feat[j]
                th = thr[j]
                bv = bits[j]
                for p in range(m):
                    mask[p] &= bv if xb[f, p] > th else _ALL_LEAVES
            k = tree_class[t]
            l0 = leaf_start[t]
            for p in range(m):  # in tree order, from 0: LightGBM's sums
                acc[k, p] += leaf_score[l0 + trailing_zeros(mask[p])]  # type: ignore[call-arg]  # a Numba intrinsic
        for p in range(m):
            lab[b0 + p], conf[b0 + p] = _label_of_scores(acc[:, p], n_scores, e)
