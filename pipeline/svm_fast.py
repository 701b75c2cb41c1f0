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
On the CPU, chunks are spread over ``n_threads`` Python threads (numpy's matmul and
exp release the GIL) with BLAS itself limited to one thread: on a busy 2-core
machine, OpenBLAS's own threads on these skinny products were measured 2-4x slower
than one BLAS thread per worker (they spin-wait for each other). numpy was also
faster here than torch on the CPU, so torch is used only for GPUs.

Voting is libsvm's: for pair (i, j), class i gets the vote if ``dec > 0``, else
class j; the winner is the class with most votes, ties going to the lowest class
index (``argmax`` takes the first maximum). The only differences from
``SVC.predict`` come from float32 rounding of decision values within ~1e-5 of 0,
or of vote ties decided by such a value: in practice well under 1 in 10,000 pixels.

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

DEFAULT_CHUNK = 1024
DEFAULT_SV_TILE = 1024


class FastSVC:
    """Batched float32 re-implementation of ``SVC.predict`` for RBF, one-vs-one models."""

    def __init__(self, svc: Any, chunk: int = DEFAULT_CHUNK, sv_tile: int = DEFAULT_SV_TILE, device: str = "cpu",
                 n_threads: int | None = None):
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
            coef[start[i]:start[i + 1], p] = dual[j - 1, start[i]:start[i + 1]]
            coef[start[j]:start[j + 1], p] = dual[i, start[j]:start[j + 1]]
        # Augmented kernel matrix: [x, ||x||^2, 1] @ aug = -gamma * ||x - sv||^2
        aug = np.vstack([2.0 * gamma * sv.T, np.full((1, len(sv)), -gamma), -gamma * (sv ** 2).sum(1)[None, :]])
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
        self.device = device
        self.n_threads = int(n_threads) if n_threads else min(2, os.cpu_count() or 1)
        self._torch: dict | None = None

    # -- core ----------------------------------------------------------------------------------
    def _augment(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        xa = np.empty((len(x), self.n_features + 2), dtype=np.float32)
        xa[:, : self.n_features] = x
        xa[:, self.n_features] = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        xa[:, self.n_features + 1] = 1.0
        return xa

    def _decision_chunk(self, x: np.ndarray) -> np.ndarray:
        xa = self._augment(x)
        dec = np.zeros((len(xa), self.coef.shape[1]), dtype=np.float32)
        nsv, t = self.n_support_vectors, self.sv_tile
        for s in range(0, nsv, t):
            k = xa @ self.aug[:, s:s + t]
            np.exp(k, out=k)
            dec += k @ self.coef[s:s + t]
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
            out[a:a + self.chunk] = self._decision_chunk(X[a:a + self.chunk])
        return out

    def votes(self, dec: np.ndarray) -> np.ndarray:
        """(n, n_pairs) decision values -> (n, n_classes) vote counts (float32)."""
        return (dec > 0).astype(np.float32) @ self.vote_pos + self.vote_base

    def _labels_chunk(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dec = self._decision_chunk(X) if self.device == "cpu" else self._torch_decision(X)
        v = self.votes(dec)
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
            idx[a:a + step], conf[a:a + step] = self._labels_chunk(X[a:a + step])

        if self.device == "cpu" and self.n_threads > 1 and n > step:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(self.n_threads) as ex:
                list(ex.map(job, starts))
        else:
            for a in starts:
                job(a)
        return self.classes_[idx], conf

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with_confidence(X)[0]

    # -- torch (GPU) -----------------------------------------------------------------------------
    def _torch_decision(self, X: np.ndarray) -> np.ndarray:
        import torch

        if self._torch is None or self._torch["device"] != self.device:
            dev = torch.device(self.device)
            self._torch = {"device": self.device, "aug": torch.from_numpy(self.aug).to(dev),
                           "coef": torch.from_numpy(self.coef).to(dev),
                           "intercept": torch.from_numpy(self.intercept).to(dev)}
        T = self._torch
        out = np.empty((len(X), self.coef.shape[1]), dtype=np.float32)
        step = max(self.chunk, 16384)
        with torch.no_grad():
            for a in range(0, len(X), step):
                xa = torch.from_numpy(self._augment(X[a:a + step])).to(T["aug"].device)
                k = xa @ T["aug"]
                k.exp_()
                dec = torch.addmm(T["intercept"], k, T["coef"])
                out[a:a + step] = dec.cpu().numpy()
        return out

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_torch"] = None
        return d
