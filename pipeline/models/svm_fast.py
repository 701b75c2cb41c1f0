"""Fast exact-vote prediction for a fitted scikit-learn RBF ``SVC``.

``SVC.predict`` (libsvm) evaluates the kernel one pixel at a time in float64 on one
core. :class:`FastSVC` computes the same one-vs-one decision values for a whole
chunk of pixels with two matrix products in float32:

1. ``-gamma * ||x - sv||^2`` for every (pixel, support vector) pair as ONE matmul of
   augmented rows ``[x, ||x||^2, 1]`` against a ``(d + 2, n_sv)`` matrix
   ``[2 gamma sv; -gamma; -gamma ||sv||^2]`` built once, then ``exp`` in place;
2. all ``n_pairs = c (c - 1) / 2`` pairwise decision values as ONE matmul of that
   kernel block against a ``(n_sv, n_pairs)`` coefficient matrix built once from the
   dual coefficients (libsvm's layout: for pair (i, j) the support vectors of class i
   carry ``dual_coef[j - 1]`` and those of class j carry ``dual_coef[i]``), plus the
   intercepts (``-rho``).

Support vectors are processed in tiles of ``sv_tile`` and pixels in chunks of
``chunk`` so that the kernel block (``chunk x sv_tile`` float32) stays in cache.
On the CPU, chunks are spread over ``n_threads`` Python threads (the matmuls and
exp release the GIL), each running its BLAS with one thread: on a busy 2-core
machine, BLAS's / OpenMP's own threads on these skinny products were measured
2-5x slower than one BLAS thread per worker (they spin-wait for each other).
Backend ``auto`` uses torch on the CPU when it is installed (MKL GEMM and AVX-512 exp:
measured ~1.4x numpy/OpenBLAS for 512-pixel x 256-SV tiles, each worker thread with
``torch.set_num_threads(1)``, which is per-thread under OpenMP), else numpy.

Voting is libsvm's: for pair (i, j), class i gets the vote if ``dec > 0``, else
class j; the winner is the class with most votes, ties going to the lowest class
index (``argmax`` takes the first maximum).

Exactness: float32 decision values are off by up to ~1e-3 for models with thousands
of support vectors, which flips about 1 label in 10,000. So each model calibrates a
tolerance ``tol`` (8 x the largest float32 error on probe points, :meth:`FastSVC._calibrate_tol`),
and any pixel whose winner could change if its decision values within ``tol`` of 0
flipped is recomputed in float64 (libsvm's formula): typically well under 1% of
pixels, so the cost is small and the labels equal ``SVC.predict`` up to float64 rounding.

Confidence (:meth:`FastSVC.predict_with_confidence`): the fraction of its
``c - 1`` one-vs-one contests that the winning class won (1.0 = it beat every other
class). It is a vote share, not a probability (``SVC(probability=False)``); with two
classes it is always 1.

On a CUDA device (``device="cuda"``, torch) the same math runs on the GPU.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

DEFAULT_CHUNK = 512
DEFAULT_SV_TILE = 256


class FastSVC:
    """Batched float32 re-implementation of ``SVC.predict`` for RBF, one-vs-one models."""

    def __init__(
        self,
        svc: Any,
        chunk: int = DEFAULT_CHUNK,
        sv_tile: int = DEFAULT_SV_TILE,
        device: str = "cpu",
        n_threads: int | None = None,
        backend: str = "auto",
    ):
        if getattr(svc, "kernel", None) != "rbf":
            raise ValueError(f"FastSVC supports the RBF kernel only, got {getattr(svc, 'kernel', None)!r}")
        if not hasattr(svc, "support_vectors_"):
            raise ValueError("FastSVC needs a fitted SVC")
        sv = np.asarray(svc.support_vectors_, dtype=np.float64)
        dual = np.asarray(svc._dual_coef_, dtype=np.float64)  # libsvm's own (unflipped) coefficients
        rho_neg = np.asarray(svc._intercept_, dtype=np.float64)  # = -rho, libsvm's own sign
        n_support = np.asarray(svc._n_support, dtype=np.int64)
        gamma = float(svc._gamma)
        self.classes_ = np.asarray(svc.classes_)
        nc = len(n_support)
        if nc != len(self.classes_):
            raise ValueError("SVC has classes without support vectors; cannot reproduce its votes")
        start = np.concatenate([[0], np.cumsum(n_support)])
        pairs = [(i, j) for i in range(nc) for j in range(i + 1, nc)]
        coef = np.zeros((len(sv), len(pairs)), dtype=np.float64)
        for p, (i, j) in enumerate(pairs):
            coef[start[i] : start[i + 1], p] = dual[j - 1, start[i] : start[i + 1]]
            coef[start[j] : start[j + 1], p] = dual[i, start[j] : start[j + 1]]
        # Augmented kernel matrix: [x, ||x||^2, 1] @ aug = -gamma * ||x - sv||^2
        aug = np.vstack([2.0 * gamma * sv.T, np.full((1, len(sv)), -gamma), -gamma * (sv**2).sum(1)[None, :]])
        self.n_classes = nc
        self.n_features = sv.shape[1]
        self.n_support_vectors = len(sv)
        self.gamma = gamma
        self.chunk = int(chunk)
        self.sv_tile = int(sv_tile)
        self.aug = np.ascontiguousarray(aug, dtype=np.float32)  # (d + 2, n_sv)
        self.coef = np.ascontiguousarray(coef, dtype=np.float32)  # (n_sv, n_pairs)
        self.intercept = rho_neg.astype(np.float32)  # (n_pairs,)
        # votes = (dec > 0) @ vote_pos + vote_base
        vp = np.zeros((len(pairs), nc), dtype=np.float32)
        vb = np.zeros(nc, dtype=np.float32)
        for p, (i, j) in enumerate(pairs):
            vp[p, i] += 1.0
            vp[p, j] -= 1.0
            vb[j] += 1.0
        self.vote_pos = vp
        self.vote_base = vb
        self.pairs = pairs
        self._pair_i = np.array([i for i, _ in pairs], dtype=np.int64)
        self._pair_j = np.array([j for _, j in pairs], dtype=np.int64)
        # float64 copies for the exact re-check of near-zero decisions
        self.sv64 = np.ascontiguousarray(sv)
        self.sv_sq64 = (sv**2).sum(1)
        self.coef64 = coef
        self.intercept64 = rho_neg
        self.device = device
        self.n_threads = int(n_threads) if n_threads else min(2, os.cpu_count() or 1)
        if backend not in ("auto", "numpy", "torch"):
            raise ValueError(f"backend must be auto, numpy or torch, got {backend!r}")
        self.backend = backend
        self._torch: dict | None = None
        self.tol = 0.0
        self.tol = self._calibrate_tol()

    # -- core ----------------------------------------------------------------------------------
    def _augment(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        xa = np.empty((len(x), self.n_features + 2), dtype=np.float32)
        xa[:, : self.n_features] = x
        xa[:, self.n_features] = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        xa[:, self.n_features + 1] = 1.0
        return xa

    def _calibrate_tol(self, n_probe: int = 2048) -> float:
        """Decision values closer to 0 than ``tol`` are re-checked in float64.

        ``tol`` = 8 x the largest float32 error seen on probe points (support vectors
        with a little noise, and points spread over their range), at least 1e-6.
        """
        rng = np.random.default_rng(0)
        sv = self.sv64
        pick = sv[rng.integers(0, len(sv), n_probe // 2)]
        near = pick + rng.normal(size=pick.shape) * sv.std(axis=0) * 0.1
        lo, hi = sv.min(axis=0), sv.max(axis=0)
        far = rng.uniform(lo, hi, size=(n_probe - len(near), sv.shape[1]))
        probe = np.vstack([near, far]).astype(np.float32)
        err = np.abs(self._decision_chunk(probe).astype(np.float64) - self._decision_exact(probe))
        return float(max(1e-6, 8.0 * err.max()))

    def _decision_exact(self, x: np.ndarray) -> np.ndarray:
        """float64 decision values, libsvm's formula (||x||^2 + ||sv||^2 - 2 x.sv) and order of magnitude."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), self.coef64.shape[1]), dtype=np.float64)
        for a in range(0, len(x), 256):
            xb = x[a : a + 256]
            d2 = (xb * xb).sum(1)[:, None] + self.sv_sq64[None, :] - 2.0 * (xb @ self.sv64.T)
            np.exp(-self.gamma * d2, out=d2)
            out[a : a + 256] = d2 @ self.coef64 + self.intercept64
        return out

    def _refine(self, x: np.ndarray, dec: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Recompute in float64 the votes of pixels whose winner could flip within ``tol``."""
        if self.tol <= 0:
            return v
        unsure = np.abs(dec) <= self.tol
        rows = np.flatnonzero(unsure.any(axis=1))
        if len(rows) == 0:
            return v
        u = unsure[rows]
        pos = dec[rows] > 0
        vv = v[rows]
        nc = self.n_classes
        # votes each class could lose (unsure pairs it currently wins) or gain (unsure pairs it loses)
        win_cls = np.where(pos, self._pair_i, self._pair_j)
        lose_cls = np.where(pos, self._pair_j, self._pair_i)
        can_lose = np.zeros((len(rows), nc), np.float32)
        can_gain = np.zeros((len(rows), nc), np.float32)
        r_idx = np.repeat(np.arange(len(rows)), u.shape[1]).reshape(u.shape)
        np.add.at(can_lose, (r_idx[u], win_cls[u]), 1.0)
        np.add.at(can_gain, (r_idx[u], lose_cls[u]), 1.0)
        w = np.argmax(vv, axis=1)
        low = vv[np.arange(len(rows)), w] - can_lose[np.arange(len(rows)), w]
        high = vv + can_gain
        high[np.arange(len(rows)), w] = -np.inf
        redo = rows[~(low > high.max(axis=1))]
        if len(redo):
            v = v.copy()
            v[redo] = self.votes(self._decision_exact(x[redo]))
        return v

    def _use_torch_cpu(self) -> bool:
        if self.backend == "numpy":
            return False
        try:
            import torch  # noqa: F401
        except ImportError:
            if self.backend == "torch":
                raise
            return False
        return True

    def _decision_chunk(self, x: np.ndarray) -> np.ndarray:
        if self._use_torch_cpu():
            return self._decision_chunk_torch(x)
        return self._decision_chunk_numpy(x)

    def _decision_chunk_torch(self, x: np.ndarray) -> np.ndarray:
        import torch

        T = self._tensors("cpu")
        with torch.no_grad():
            xa = torch.from_numpy(self._augment(x))
            dec = T["intercept"].repeat(len(xa), 1)
            nsv, t = self.n_support_vectors, self.sv_tile
            for s in range(0, nsv, t):
                k = xa @ T["aug"][:, s : s + t]
                k.exp_()
                dec.addmm_(k, T["coef"][s : s + t])
        return dec.numpy()

    def _decision_chunk_numpy(self, x: np.ndarray) -> np.ndarray:
        xa = self._augment(x)
        dec = np.zeros((len(xa), self.coef.shape[1]), dtype=np.float32)
        nsv, t = self.n_support_vectors, self.sv_tile
        for s in range(0, nsv, t):
            k = xa @ self.aug[:, s : s + t]
            np.exp(k, out=k)
            dec += k @ self.coef[s : s + t]
        dec += self.intercept
        return dec

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """One-vs-one decision values (n, n_pairs), libsvm's pair order and sign
        (as ``SVC(decision_function_shape='ovo').decision_function``)."""
        X = np.asarray(X)
        if self.device != "cpu":
            return self._torch_decision(X)
        out = np.empty((len(X), self.coef.shape[1]), dtype=np.float32)
        for a in range(0, len(X), self.chunk):
            out[a : a + self.chunk] = self._decision_chunk(X[a : a + self.chunk])
        return out

    def votes(self, dec: np.ndarray) -> np.ndarray:
        """(n, n_pairs) decision values -> (n, n_classes) vote counts (float32), no re-check."""
        return (dec > 0).astype(np.float32) @ self.vote_pos + self.vote_base

    def _labels_chunk(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dec = self._decision_chunk(X) if self.device == "cpu" else self._torch_decision(X)
        v = self._refine(X, dec, self.votes(dec))
        i = np.argmax(v, axis=1)  # first maximum = lowest class index, as libsvm
        conf = v[np.arange(len(i)), i] / np.float32(max(self.n_classes - 1, 1))
        return i, conf

    def predict_with_confidence(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels (the SVC's ``classes_``) and vote-share confidence for rows of ``X``."""
        X = np.asarray(X)
        n = len(X)
        idx = np.empty(n, dtype=np.int64)
        conf = np.empty(n, dtype=np.float32)
        step = self.chunk if self.device == "cpu" else max(self.chunk, 65536)
        starts = range(0, n, step)

        def job(a: int) -> None:
            idx[a : a + step], conf[a : a + step] = self._labels_chunk(X[a : a + step])

        if self.device == "cpu" and self.n_threads > 1 and n > step:
            from threadpoolctl import threadpool_limits

            torch_cpu = self._use_torch_cpu()

            def one_thread() -> None:  # per worker thread (OpenMP/MKL thread counts are per thread)
                if torch_cpu:
                    import torch

                    torch.set_num_threads(1)

            prev = None
            if torch_cpu:
                import torch

                prev = torch.get_num_threads()
            try:
                with (
                    threadpool_limits(limits=1, user_api="blas"),
                    ThreadPoolExecutor(self.n_threads, initializer=one_thread) as ex,
                ):
                    list(ex.map(job, starts))
            finally:
                # torch's thread setting is per thread under OpenMP but global for its native pool:
                # leave the caller's as it was.
                if prev is not None and torch.get_num_threads() != prev:
                    torch.set_num_threads(prev)
        else:
            for a in starts:
                job(a)
        return self.classes_[idx], conf

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with_confidence(X)[0]

    # -- torch (GPU) -----------------------------------------------------------------------------
    def _tensors(self, device: str) -> dict:
        import torch

        cache = self._torch
        if cache is None:
            cache = self._torch = {}
        if device not in cache:
            dev = torch.device(device)
            cache[device] = {
                "aug": torch.from_numpy(self.aug).to(dev),
                "coef": torch.from_numpy(self.coef).to(dev),
                "intercept": torch.from_numpy(self.intercept).to(dev),
            }
        return cache[device]

    def _torch_decision(self, X: np.ndarray) -> np.ndarray:
        import torch

        T = self._tensors(self.device)
        out = np.empty((len(X), self.coef.shape[1]), dtype=np.float32)
        step = max(self.chunk, 16384)
        with torch.no_grad():
            for a in range(0, len(X), step):
                xa = torch.from_numpy(self._augment(X[a : a + step])).to(T["aug"].device)
                k = xa @ T["aug"]
                k.exp_()
                dec = torch.addmm(T["intercept"], k, T["coef"])
                out[a : a + step] = dec.cpu().numpy()
        return out

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_torch"] = None
        return d
