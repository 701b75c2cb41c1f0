"""Numba kernel of :mod:`pipeline.models.gaussian`: every class's Gaussian log-likelihood of every
pixel as one whitened quadratic form, with the label and winning posterior taken in the kernel.

Kept in its own module, imported on first use (importing it imports Numba and loads the compiled
kernel from Numba's on-disk cache, or compiles it once)."""

import numba as nb
import numpy as np

#: Pixels whose quadratic forms are formed together: the innermost loops run over them (SIMD).
BLOCK = 256

#: A class whose log-posterior lies this far below the winner's adds ``exp(gap) < 2**-54`` to a
#: sum that starts at the winner's 1: less than half a unit in the last place of a float64 >= 1,
#: so the sum is the same without it (and its ``exp``, the kernel's costliest step, is skipped).
NEGLIGIBLE_GAP = -38.0


@nb.njit(nogil=True, cache=True)
def gaussian_argmax(P, start, stop, centre, A, offset, log_norm, lab, conf):  # pragma: no cover - compiled
    """Pixels ``start .. stop`` of the feature planes ``P`` (d, n): for each class k, with
    ``x' = x - centre`` and ``A[k]`` lower triangular,
    ``log_norm[k] - ||A[k] @ x' - offset[k]||^2 / 2`` in float64; ``lab`` the first class of the
    largest, ``conf`` its posterior ``1 / sum_j exp(s_j - s_max)`` (the winner's 1 first, then the
    others in class order, those below :data:`NEGLIGIBLE_GAP` left out: they change nothing).
    Pixels go :data:`BLOCK` at a time and the innermost loops run over them, reading each
    feature plane where it lies; no (n, classes) array is written."""
    n_classes, d = offset.shape
    xt = np.empty((d, BLOCK))
    z = np.empty(BLOCK)
    q = np.empty(BLOCK)
    score = np.empty((n_classes, BLOCK))
    for b0 in range(start, stop, BLOCK):
        m = min(BLOCK, stop - b0)
        for j in range(d):
            c = centre[j]
            for p in range(m):
                xt[j, p] = P[j, b0 + p] - c
        for k in range(n_classes):
            for p in range(m):
                q[p] = 0.0
            for i in range(d):
                e = offset[k, i]
                for p in range(m):
                    z[p] = -e
                for j in range(i + 1):
                    w = A[k, i, j]
                    for p in range(m):
                        z[p] += w * xt[j, p]
                for p in range(m):
                    q[p] += z[p] * z[p]
            ln = log_norm[k]
            for p in range(m):
                score[k, p] = ln - 0.5 * q[p]
        for p in range(m):
            best = 0
            top = score[0, p]
            for k in range(1, n_classes):
                if score[k, p] > top:
                    top = score[k, p]
                    best = k
            total = 1.0
            for k in range(n_classes):
                gap = score[k, p] - top
                if k != best and gap > NEGLIGIBLE_GAP:
                    total += np.exp(gap)
            lab[b0 + p] = best
            conf[b0 + p] = 1.0 / total
