"""Numba kernel of :mod:`pipeline.models.gaussian`: every class's Gaussian log-likelihood of every
pixel as one whitened quadratic form, with the label and winning posterior taken in the kernel.

Kept in its own module, imported on first use (importing it imports Numba and loads the compiled
kernel from Numba's on-disk cache, or compiles it once)."""

import numba as nb
import numpy as np

#: Pixels whose quadratic forms are formed together: the innermost loops run over them (SIMD).
BLOCK = 256


@nb.njit(nogil=True, cache=True)
def gaussian_argmax(X, start, stop, inv_chol, means, log_norm, lab, conf):  # pragma: no cover - compiled
    """Rows ``start .. stop`` of ``X`` (n, d): for each class k,
    ``log_norm[k] - ||inv_chol[k] @ (x - means[k])||^2 / 2`` (``inv_chol[k]`` lower triangular,
    ``L_k^-1``), in float64; ``lab`` the first class of the largest, ``conf`` its posterior
    ``1 / sum_j exp(s_j - s_max)``. Rows go :data:`BLOCK` at a time, transposed so that the
    innermost loops run over pixels; no (n, classes) array is written."""
    n_classes, d = means.shape
    xt = np.empty((d, BLOCK))
    z = np.empty(BLOCK)
    q = np.empty(BLOCK)
    score = np.empty((n_classes, BLOCK))
    for b0 in range(start, stop, BLOCK):
        m = min(BLOCK, stop - b0)
        for k in range(n_classes):
            for j in range(d):
                mu = means[k, j]
                for p in range(m):
                    xt[j, p] = X[b0 + p, j] - mu
            for p in range(m):
                q[p] = 0.0
            for i in range(d):
                for p in range(m):
                    z[p] = 0.0
                for j in range(i + 1):
                    w = inv_chol[k, i, j]
                    for p in range(m):
                        z[p] += w * xt[j, p]
                for p in range(m):
                    q[p] += z[p] * z[p]
            for p in range(m):
                score[k, p] = log_norm[k] - 0.5 * q[p]
        for p in range(m):
            best = 0
            top = score[0, p]
            for k in range(1, n_classes):
                if score[k, p] > top:
                    top = score[k, p]
                    best = k
            total = 0.0
            for k in range(n_classes):
                total += np.exp(score[k, p] - top)
            lab[b0 + p] = best
            conf[b0 + p] = 1.0 / total
