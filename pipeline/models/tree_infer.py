"""Compiled inference for fitted decision trees, random forests and gradient-boosted trees.

scikit-learn walks each tree one pixel at a time (``Tree.apply``): at every node a branch
whose direction the CPU cannot guess, so a forest of fully grown trees spends most of its
time on mispredicted branches (a whole tree fits in L2 here; memory is not the limit). This
module repacks the fitted trees and walks them with a Numba kernel that has no data-dependent
branch in its inner loop:

* nodes are renumbered breadth-first so that the two children of a node are adjacent, and
  one step is ``j = base[j] + (x[feature[j]] > threshold[j])``; a leaf points at itself
  (``base = j``, threshold ``+inf``), so a row that has reached its leaf stays there;
* a group of :data:`~pipeline.models._tree_layout.GROUP` rows descends one tree together,
  level by level. Every row takes the tree's shallowest-leaf depth of steps at once; then the
  rows still inside the tree are kept in a list, advanced
  :data:`~pipeline.models._tree_layout.STEPS` levels at a time and the list is compacted (rows
  at a leaf drop out without a branch), so the work follows each row's own depth, not the
  tree's deepest leaf;
* thresholds are float32: for a float32 ``x``, ``x <= t`` holds exactly when ``x`` is at most
  the largest float32 not above the float64 ``t`` (what the repacking stores), so the split
  decisions are those of scikit-learn;
* a forest adds each tree's leaf class fractions (or, when every leaf is pure, as in fully
  grown trees, counts one vote per tree: whole numbers, exact) in float64 in tree order and divides by
  the number of trees, as ``RandomForestClassifier.predict_proba`` does, then takes the
  argmax (first maximum) and its probability inside the kernel: no ``(n, classes)`` array
  per tree or per window is written.

Gradient-boosted trees of at most 32 leaves (LightGBM's default 31) are not walked at all
(:class:`BitvectorTrees`): a row's leaf is found from a 32-bit mask of the tree's leaves that
each split sending the row right clears the left subtree's leaves from, every split tested for a
block of rows at once (QuickScorer's exit leaf; no dependent loads, the loops vectorise).

Rows with a NaN feature are left to scikit-learn (its missing-value routing is per node);
the mapping's features never hold NaN (:mod:`pipeline.sampling.features` fills them).

The kernels are compiled on first use and cached on disk (Numba's ``cache=True``: beside
this file, or in Numba's user-wide cache when that is not writable), so the compilation
(about 6 s) is paid once per installation; each process then pays about 1 s the first time it
predicts (importing Numba, loading the kernels it uses), and about 100 MB of memory.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np

from pipeline.models._tree_layout import GROUP

_MIN_ROWS_PER_THREAD = 4096

_kernels: dict[str, Any] = {}
_kernels_lock = threading.Lock()


def _compile() -> dict[str, Any]:
    """The kernels of :mod:`pipeline.models._tree_kernels`, compiled (or loaded from Numba's
    cache) on first use; imported lazily so that importing the models does not import Numba."""
    with _kernels_lock:
        if not _kernels:
            from pipeline.models import _tree_kernels as k

            _kernels.update(
                boost_argmax=k.boost_argmax,
                boost_bitvector=k.boost_bitvector,
                forest_argmax=k.forest_argmax,
                forest_votes=k.forest_votes,
                tree_leaves=k.tree_leaves,
                tree_lookup=k.tree_lookup,
                tree_lookup_columns=k.tree_lookup_columns,
            )
        return _kernels


def warm_up() -> None:
    """Load the compiled kernels now (import Numba, read them from its cache or compile them)
    by running each once on a one-node tree, so that the first window does not pay for it."""
    X = np.zeros((1, 1), np.float32)
    packed = PackedTrees.__new__(PackedTrees)
    packed.feature = np.zeros(1, np.uint32)
    packed.threshold = np.full(1, np.inf, np.float32)
    packed.base = np.zeros(1, np.uint32)
    packed.leaf_slot = np.zeros(1, np.uint32)
    packed.leaf_value = np.ones((1, 1), np.float64)
    packed.leaf_node = np.zeros(1, np.int64)
    packed.roots = np.zeros(1, np.uint32)
    packed.min_depth = np.zeros(1, np.int64)
    packed.n_features = 1
    packed.leaf_class = np.zeros(1, np.uint32)
    for packed.pure in (True, False):
        packed.proba_argmax(X)
    for n_scores in (1, 2):
        packed.boost_argmax(X, np.zeros(1, np.int64), n_scores)
        stump = SimpleNamespace(
            children_left=np.array([-1]), children_right=np.array([-1]), feature=np.array([-2]),
            threshold=np.array([-2.0]), value=np.zeros((1, 1, 1)), n_features=1,
        )  # fmt: skip
        BitvectorTrees([stump], np.zeros(1, np.int64), n_scores).predict(X.T, columns=True)
    packed.leaves(X)
    for columns in (False, True):
        packed.leaf_lookup(X, np.zeros(1, np.int64), np.zeros(1, np.float32), columns=columns)


def float32_floor(t: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 ``t`` (``-inf`` below the float32 range).

    For a float32 ``x``: ``x <= t`` exactly when ``x <= float32_floor(t)``."""
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore"):  # beyond the float32 range: +-inf, then stepped down below
        f = t.astype(np.float32)  # round to nearest: may land above t
    above = f.astype(np.float64) > t
    f[above] = np.nextafter(f[above], np.float32(-np.inf))
    return f


class PackedTrees:
    """Fitted sklearn trees repacked for :func:`_compile`'s kernels.

    Built from a ``DecisionTreeClassifier``, a ``RandomForestClassifier`` or their
    ``tree_`` objects; holds, over all trees, per node ``feature`` (uint32), ``threshold``
    (float32, see :func:`float32_floor`), ``base`` (uint32: the left child, the right child
    being ``base + 1``; a leaf's own index) and ``leaf_slot`` (uint32: the leaf's row in
    ``leaf_value`` and ``leaf_node``, 0 for internal nodes); per leaf ``leaf_value``
    (float64 (n_leaves, classes): the leaf's class fractions, ``tree_.value``, which is what
    ``DecisionTreeClassifier.predict_proba`` returns) and ``leaf_node`` (the leaf's node id in its own
    sklearn tree); per tree ``roots`` and ``min_depth`` (depth of its shallowest leaf).
    """

    def __init__(self, trees: list[Any]):
        feats, thrs, bases, slots, values, leaf_nodes = [], [], [], [], [], []
        roots, min_depth = [], []
        offset = leaves = 0
        for tree in trees:
            left, right = tree.children_left, tree.children_right
            order, shallowest = _breadth_first(left, right)
            new = np.empty(len(order), np.int64)
            new[order] = np.arange(len(order))
            internal = left[order] >= 0
            base = np.arange(len(order), dtype=np.int64)
            base[internal] = new[left[order][internal]]
            if not np.array_equal(
                new[right[order][internal]], base[internal] + 1
            ):  # pragma: no cover - by construction
                raise AssertionError("children are not adjacent")
            feat = np.where(internal, tree.feature[order], 0)
            thr = np.where(internal, float32_floor(tree.threshold[order]), np.float32(np.inf)).astype(np.float32)
            n_leaf = int((~internal).sum())
            slot = np.full(len(order), -1, np.int64)
            slot[~internal] = leaves + np.arange(n_leaf)
            # scikit-learn >= 1.4 stores each node's class fractions: predict_proba returns them as they are
            value = tree.value[order[~internal], 0, :].astype(np.float64)
            feats.append(feat)
            thrs.append(thr)
            bases.append(base + offset)
            slots.append(slot)
            values.append(value)
            leaf_nodes.append(order[~internal])
            roots.append(offset)
            min_depth.append(shallowest)
            offset += len(order)
            leaves += n_leaf
        if offset >= 2**32 - 1:  # pragma: no cover - a forest of four billion nodes
            raise ValueError("too many tree nodes for uint32 indices")
        self.feature = np.ascontiguousarray(np.concatenate(feats), dtype=np.uint32)
        self.threshold = np.ascontiguousarray(np.concatenate(thrs), dtype=np.float32)
        self.base = np.ascontiguousarray(np.concatenate(bases), dtype=np.uint32)
        self.leaf_slot = np.ascontiguousarray(np.concatenate(slots).clip(0), dtype=np.uint32)
        self.leaf_value = np.ascontiguousarray(np.concatenate(values), dtype=np.float64)
        self.leaf_node = np.ascontiguousarray(np.concatenate(leaf_nodes), dtype=np.int64)
        self.roots = np.asarray(roots, dtype=np.uint32)
        # Fully grown trees have pure leaves (one class at fraction 1): the forest then counts votes
        self.leaf_class = np.argmax(self.leaf_value, axis=1).astype(np.uint32) if len(self.leaf_value) else None
        one_hot = self.leaf_value.max(axis=1) == 1.0
        self.pure = bool(len(self.leaf_value)) and bool(np.all(one_hot & (self.leaf_value.sum(axis=1) == 1.0)))
        self.min_depth = np.asarray(min_depth, dtype=np.int64)
        self.n_features = int(max(int(getattr(t, "n_features", 0)) for t in trees)) if trees else 0

    source: Any = None  # the estimator packed, when built by from_estimator

    @classmethod
    def from_estimator(cls, estimator: Any) -> PackedTrees:
        """From a fitted ``DecisionTreeClassifier`` or ``RandomForestClassifier``."""
        trees = [e.tree_ for e in estimator.estimators_] if hasattr(estimator, "estimators_") else [estimator.tree_]
        packed = cls(trees)
        packed.source = estimator
        return packed

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must be (n, {self.n_features}), got {X.shape}")
        return X

    def proba_argmax(self, X: np.ndarray, n_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(n, f) float32 rows without NaN -> (column of the largest mean probability (int64,
        first maximum on ties), that probability (float64)): ``argmax`` and ``max`` of the
        forest's ``predict_proba``, computed in ``n_threads`` threads."""
        X = self._check(X)
        n = len(X)
        lab = np.empty(n, np.int64)
        conf = np.empty(n, np.float64)
        k = self.leaf_value.shape[1]
        # rows per pass over the trees: their float64 sums (chunk x classes, 256 KB) and features
        # stay in the core's cache with the tree, even when other processes share the core
        chunk = max(GROUP, (2**18 // (8 * k)) // GROUP * GROUP)
        kernels = _compile()

        def run(a: int, b: int) -> None:
            if self.pure:  # one vote per tree: 1.3x faster than adding every class's fraction
                kernels["forest_votes"](
                    X, a, b, chunk, self.feature, self.threshold, self.base, self.leaf_slot, self.leaf_class, k,
                    self.roots, self.min_depth, lab, conf,
                )  # fmt: skip
            else:
                kernels["forest_argmax"](
                    X, a, b, chunk, self.feature, self.threshold, self.base, self.leaf_slot, self.leaf_value,
                    self.roots, self.min_depth, lab, conf,
                )  # fmt: skip

        _in_threads(run, n, n_threads)
        return lab, conf

    def boost_argmax(
        self, X: np.ndarray, tree_class: np.ndarray, n_scores: int, n_threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, f) float32 rows without NaN -> (class column of the highest probability (int64, first
        maximum), that probability (float64)) of a gradient-boosted ensemble whose trees each add
        their leaf's score (``leaf_value[:, 0]``) to class ``tree_class[t]``'s raw score; softmax
        over ``n_scores`` scores, or the sigmoid of one (binary: columns ``[1 - p, p]``). The sums
        and the transform are LightGBM's own, in its order (see :func:`_tree_kernels.boost_argmax`)."""
        X = self._check(X)
        n = len(X)
        lab = np.empty(n, np.int64)
        conf = np.empty(n, np.float64)
        tree_class = np.ascontiguousarray(tree_class, dtype=np.int64)
        if len(tree_class) != self.n_trees:
            raise ValueError(f"tree_class must have one entry per tree ({self.n_trees})")
        score = np.ascontiguousarray(self.leaf_value[:, 0], dtype=np.float64)
        chunk = max(GROUP, (2**18 // (8 * max(1, n_scores))) // GROUP * GROUP)
        kern = _compile()["boost_argmax"]

        def run(a: int, b: int) -> None:
            kern(
                X, a, b, chunk, self.feature, self.threshold, self.base, self.leaf_slot, score, tree_class,
                int(n_scores), self.roots, self.min_depth, lab, conf,
            )  # fmt: skip

        _in_threads(run, n, n_threads)
        return lab, conf

    def leaves(self, X: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """(n, f) float32 rows without NaN -> (n,) int64 leaf of the first (or only) tree, as
        its sklearn node id (``Tree.apply``)."""
        X = self._check(X)
        n = len(X)
        slot = np.empty(n, np.int64)
        kern = _compile()["tree_leaves"]

        def run(a: int, b: int) -> None:
            kern(
                X, a, b, self.feature, self.threshold, self.base, self.leaf_slot, self.roots[0], self.min_depth[0], slot
            )

        _in_threads(run, n, n_threads)
        return self.leaf_node[slot]

    def leaf_lookup(
        self,
        X: np.ndarray,
        label: np.ndarray,
        conf: np.ndarray,
        n_threads: int = 1,
        columns: bool = False,
        fill: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, f) float32 rows without NaN -> (``label[s]``, ``conf[s]``) for each row's leaf ``s``
        in the first (or only) tree, ``s`` indexing :attr:`leaf_node` (a leaf's per-leaf
        answer, looked up in the kernel: no array of leaves in between).

        With ``columns=True``, ``X`` is (f, n) (a window's band planes, read where they are:
        no transposed copy), and a value that is not finite (NaN, +-inf) is read as ``fill``."""
        if columns:
            X = np.ascontiguousarray(X, dtype=np.float32)
            if X.ndim != 2 or X.shape[0] != self.n_features:
                raise ValueError(f"X must be ({self.n_features}, n), got {X.shape}")
            n = X.shape[1]
        else:
            X = self._check(X)
            n = len(X)
        label = np.ascontiguousarray(label, dtype=np.int64)
        conf_t = np.ascontiguousarray(conf, dtype=np.float32)
        if len(label) != len(self.leaf_node) or len(conf_t) != len(self.leaf_node):
            raise ValueError(f"tables must have one entry per leaf ({len(self.leaf_node)})")
        lab = np.empty(n, np.int64)
        out = np.empty(n, np.float32)
        kernels = _compile()
        tree = (self.feature, self.threshold, self.base, self.leaf_slot, self.roots[0], self.min_depth[0])

        def run(a: int, b: int) -> None:
            if columns:
                kernels["tree_lookup_columns"](X, np.float32(fill), a, b, *tree, label, conf_t, lab, out)
            else:
                kernels["tree_lookup"](X, a, b, *tree, label, conf_t, lab, out)

        _in_threads(run, n, n_threads)
        return lab, out


class BitvectorTrees:
    """Gradient-boosted trees of at most :data:`MAX_BITVECTOR_LEAVES` leaves each, laid out for
    :func:`_tree_kernels.boost_bitvector` (QuickScorer's layout): per split, over all trees in
    tree order and within a tree by feature, ``feature`` (uint32), ``threshold`` (float32, see
    :func:`float32_floor`) and ``bits`` (uint32: every leaf but those of the split's left
    subtree, leaves numbered left to right); per tree ``node_start`` (its first split; one more
    entry at the end), ``leaf_start`` (its first leaf in ``leaf_score``) and ``tree_class``.

    Built from trees in scikit-learn's node layout (``children_left``, ``children_right``,
    ``feature``, ``threshold``, ``value[:, 0, 0]`` the leaf score), as
    :func:`pipeline.models.boosting.parse_trees` gives them.
    """

    def __init__(self, trees: list[Any], tree_class: np.ndarray, n_scores: int):
        feats: list[int] = []
        thrs: list[float] = []
        bits: list[int] = []
        node_start, leaf_start, scores = [0], [], []
        leaves = 0
        for tree in trees:
            left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
            order = _leaves_left_to_right(left, right)
            if len(order) > MAX_BITVECTOR_LEAVES:
                raise ValueError(f"a tree has {len(order)} leaves; at most {MAX_BITVECTOR_LEAVES}")
            rank = np.full(len(left), -1, np.int64)
            rank[order] = np.arange(len(order))
            split_nodes = np.flatnonzero(left >= 0)
            # leaves of each split's left subtree: a contiguous run of ranks [first, last]
            first, last = _leaf_rank_spans(left, right, rank)
            f, t, b = [], [], []
            for j in split_nodes:
                lo, hi = first[left[j]], last[left[j]]
                cleared = ((1 << (hi + 1)) - 1) ^ ((1 << lo) - 1)
                f.append(int(tree.feature[j]))
                t.append(float(tree.threshold[j]))
                b.append(0xFFFFFFFF ^ cleared)
            by_feature = np.argsort(np.asarray(f, np.int64), kind="stable")  # the feature's plane stays in cache
            feats.extend(np.asarray(f, np.int64)[by_feature])
            thrs.extend(np.asarray(t, np.float64)[by_feature])
            bits.extend(np.asarray(b, np.uint64)[by_feature])
            node_start.append(node_start[-1] + len(f))
            leaf_start.append(leaves)
            scores.append(np.asarray(tree.value, np.float64).reshape(len(left), -1)[order, 0])
            leaves += len(order)
        self.feature = np.asarray(feats, dtype=np.uint32)
        self.threshold = float32_floor(np.asarray(thrs, dtype=np.float64)).astype(np.float32)
        self.bits = np.asarray(bits, dtype=np.uint64).astype(np.uint32)
        self.node_start = np.asarray(node_start, dtype=np.int64)
        self.leaf_start = np.asarray(leaf_start, dtype=np.int64)
        self.leaf_score = np.ascontiguousarray(np.concatenate(scores) if scores else np.zeros(0), dtype=np.float64)
        self.tree_class = np.ascontiguousarray(tree_class, dtype=np.int64)
        if len(self.tree_class) != len(trees):
            raise ValueError(f"tree_class must have one entry per tree ({len(trees)})")
        self.n_scores = int(n_scores)
        self.n_features = int(max(int(getattr(t, "n_features", 0)) for t in trees)) if trees else 0

    def predict(self, X: np.ndarray, n_threads: int = 1, columns: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(n, f) float32 rows without NaN, or with ``columns=True`` (f, n) feature planes ->
        (class column of the highest probability (int64, first maximum), that probability
        (float64)): what :meth:`PackedTrees.boost_argmax` returns for the same trees, LightGBM's
        sums in its order and its transform."""
        XT = np.ascontiguousarray(X if columns else np.asarray(X).T, dtype=np.float32)
        if XT.ndim != 2 or XT.shape[0] != self.n_features:
            shape = f"({self.n_features}, n)" if columns else f"(n, {self.n_features})"
            raise ValueError(f"X must be {shape}, got {np.shape(X)}")
        n = XT.shape[1]
        lab = np.empty(n, np.int64)
        conf = np.empty(n, np.float64)
        kern = _compile()["boost_bitvector"]

        def run(a: int, b: int) -> None:
            kern(
                XT, a, b, self.node_start, self.feature, self.threshold, self.bits, self.leaf_start,
                self.leaf_score, self.tree_class, self.n_scores, lab, conf,
            )  # fmt: skip

        _in_threads(run, n, n_threads)
        return lab, conf


#: Leaves a tree may have for :class:`BitvectorTrees` (one bit each in a uint32 mask);
#: LightGBM's default ``num_leaves`` is 31.
MAX_BITVECTOR_LEAVES = 32


def _leaves_left_to_right(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Node ids of a tree's leaves from left to right (in-order)."""
    out, stack = [], [0]
    while stack:
        j = stack.pop()
        if left[j] < 0:
            out.append(j)
        else:
            stack += [int(right[j]), int(left[j])]  # left popped first
    return np.asarray(out, dtype=np.int64)


def _leaf_rank_spans(left: np.ndarray, right: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) leaf rank under each node (a subtree's leaves are consecutive left to right)."""
    first = rank.copy()
    last = rank.copy()
    post, stack = [], [0]
    while stack:  # parents before children, reversed below: children before parents
        j = stack.pop()
        post.append(j)
        if left[j] >= 0:
            stack += [int(left[j]), int(right[j])]
    for j in reversed(post):
        if left[j] >= 0:
            first[j], last[j] = first[left[j]], last[right[j]]
    return first, last


def _in_threads(run: Any, n: int, n_threads: int) -> None:
    """``run(a, b)`` over ``[0, n)`` in at most ``n_threads`` contiguous chunks (the kernels
    release the GIL)."""
    k = max(1, min(int(n_threads), n // _MIN_ROWS_PER_THREAD))
    if k == 1:
        run(0, n)
        return
    edges = np.linspace(0, n, k + 1).astype(np.int64)
    edges[1:-1] -= edges[1:-1] % GROUP  # chunk borders on group borders
    with ThreadPoolExecutor(max_workers=k) as pool:
        for f in [pool.submit(run, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]:
            f.result()


def _breadth_first(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, int]:
    """(node ids of a tree in breadth-first order, each left child right before its sibling;
    depth of the shallowest leaf, 0 for a lone root)."""
    levels = [np.zeros(1, np.int64)]
    min_depth = -1
    while True:
        level = levels[-1]
        inner = level[left[level] >= 0]
        if min_depth < 0 and len(inner) < len(level):
            min_depth = len(levels) - 1
        if not len(inner):
            return np.concatenate(levels), min_depth
        levels.append(np.stack([left[inner], right[inner]], axis=1).ravel())
