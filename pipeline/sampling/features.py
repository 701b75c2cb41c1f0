"""Per-pixel features for the classical baselines, identical from patches and from blocks.

A :class:`FeatureSpec` (built from a :class:`~pipeline.sampling.settings.FeatureConfig` and the
model's band names and patch size) turns

* training / evaluation patches ``(n, bands, k, k)`` into ``(n, f)`` rows
  (:meth:`FeatureSpec.from_patches`), and
* mapping blocks ``(bands, H + 2h, W + 2h)`` into ``(H * W, f)`` rows
  (:meth:`FeatureSpec.from_block`, with ``h = FeatureSpec.halo``),

so that the row of block pixel ``[i, j]`` equals the row of the patch centred on
block pixel ``[i + h, j + h]``. Feature columns, in order (see :meth:`FeatureSpec.names`):

1. the centre pixel's band values (one per band);
2. the requested spectral indices (``ndvi``, ``ndwi``, ``ndbi``, ``nbr``), normalised
   differences of named bands (see :data:`BAND_ALIASES`);
3. with ``patch_stats``: the mean of each band over the k x k window, then the
   standard deviation (population, ddof=0) of each band over the window, both
   ignoring NaN (k = the model's patch size).

NaN handling, the same in both paths: NaN band values stay NaN through the
arithmetic, an index whose denominator is 0 is 0, window statistics over a window
with no valid pixel are NaN, and finally every NaN feature is replaced by 0
(:data:`NAN_FILL`). Pixels whose own bands are NaN are masked by the mapper.

The block path computes k x k window sums of values, squares and valid counts in
float64 (separable shifted sums, after subtracting a per-band offset so that sums
of squares do not cancel); the patch path uses ``nanmean`` / ``nanstd`` in float64.
Both are rounded to float32 at the end and agree to ~1e-6 relative.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from pipeline.core.errors import InputError

#: Value that replaces NaN features (nodata, empty windows, undefined indices).
NAN_FILL = 0.0

#: Accepted band names (case-insensitive, after stripping spaces, '-' and '_') per role.
BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "blue": ("blue", "b2", "b02", "b1sr", "coastalblue"),
    "green": ("green", "g", "b3", "b03"),
    "red": ("red", "r", "b4", "b04"),
    "nir": ("nir", "nir08", "nir1", "b8", "b08", "b8a", "nearinfrared", "nearir"),
    "swir1": ("swir1", "swir16", "swir", "b11", "shortwaveinfrared1"),
    "swir2": ("swir2", "swir22", "b12", "shortwaveinfrared2"),
}

#: Index -> (a, b): the index is (a - b) / (a + b).
INDEX_BANDS: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),
    "ndwi": ("green", "nir"),  # McFeeters (1996) water index
    "ndbi": ("swir1", "nir"),
    "nbr": ("nir", "swir2"),
}


def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch not in " -_")


def resolve_band(role: str, band_names: Sequence[str], index: str = "") -> int:
    """Position of the band playing ``role`` (e.g. ``nir``) in ``band_names``.

    Raises :class:`InputError` naming the missing band and the accepted names.
    """
    aliases = BAND_ALIASES[role]
    hits = [i for i, b in enumerate(band_names) if _norm(b) in aliases]
    what = f"index {index!r} needs" if index else "needs"
    if not hits:
        raise InputError(
            f"features.indices: {what} a {role!r} band, but the bands are {list(band_names)}; "
            f"name one of them {'/'.join(aliases)} (rasters.band_names) or drop {index or role!r}"
        )
    if len(hits) > 1:
        raise InputError(
            f"features.indices: several bands could be {role!r}: {[band_names[i] for i in hits]}; "
            "rename them in rasters.band_names"
        )
    return hits[0]


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a model uses; see the module docstring for the column order."""

    band_names: tuple[str, ...]
    indices: tuple[str, ...] = ()
    patch_stats: bool = False
    patch_size: int = 1

    def __post_init__(self) -> None:
        if self.patch_stats and self.patch_size % 2 != 1:
            raise ValueError(f"patch_size must be odd, got {self.patch_size}")
        for ix in self.indices:
            if ix not in INDEX_BANDS:
                raise InputError(f"features.indices: unknown index {ix!r}; choose from {', '.join(INDEX_BANDS)}")
        _ = self.index_bands  # resolve now so that a missing band fails at construction

    @classmethod
    def from_config(cls, cfg: Any, band_names: Sequence[str], patch_size: int) -> FeatureSpec:
        """From a ``FeatureConfig`` (or None for centre bands only)."""
        if cfg is None:
            return cls(tuple(band_names), (), False, int(patch_size))
        return cls(
            tuple(band_names),
            tuple(getattr(cfg, "indices", ()) or ()),
            bool(getattr(cfg, "patch_stats", False)),
            int(patch_size),
        )

    @property
    def index_bands(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for ix in self.indices:
            a, b = INDEX_BANDS[ix]
            out.append((resolve_band(a, self.band_names, ix), resolve_band(b, self.band_names, ix)))
        return out

    @property
    def halo(self) -> int:
        """Pixels of context needed around an output pixel."""
        return self.patch_size // 2 if self.patch_stats else 0

    @property
    def n_bands(self) -> int:
        return len(self.band_names)

    @property
    def n_features(self) -> int:
        return self.n_bands + len(self.indices) + (2 * self.n_bands if self.patch_stats else 0)

    def names(self) -> list[str]:
        out = list(self.band_names) + list(self.indices)
        if self.patch_stats:
            out += [f"{b}_mean" for b in self.band_names] + [f"{b}_std" for b in self.band_names]
        return out

    # -- shared pieces -------------------------------------------------------------------------
    def _indices(self, centre: np.ndarray) -> list[np.ndarray]:
        """centre: (bands, ...) float32 -> one array per index, same trailing shape."""
        out = []
        for ia, ib in self.index_bands:
            a, b = centre[ia], centre[ib]
            num = a - b
            den = a + b
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(den == 0, np.float32(0), num / np.where(den == 0, np.float32(1), den))
            out.append(v.astype(np.float32, copy=False))
        return out

    # -- patches ---------------------------------------------------------------------------------
    def from_patches(self, patches: np.ndarray) -> np.ndarray:
        """(n, bands, k', k') -> (n, f) float32, C-contiguous. k' >= patch_size when patch_stats."""
        p = np.asarray(patches)
        if p.ndim != 4 or p.shape[1] != self.n_bands:
            raise ValueError(f"patches must be (n, {self.n_bands}, k, k), got {p.shape}")
        kk = p.shape[-1]
        c = kk // 2
        n = p.shape[0]
        out = np.empty((n, self.n_features), dtype=np.float32)
        centre = np.asarray(p[:, :, c, c], dtype=np.float32)  # (n, bands)
        out[:, : self.n_bands] = centre
        col = self.n_bands
        for v in self._indices(centre.T):
            out[:, col] = v
            col += 1
        if self.patch_stats:
            k, r = self.patch_size, self.patch_size // 2
            if kk < k:
                raise ValueError(f"patch_stats needs patches of at least {k} x {k}, got {kk} x {kk}")
            win = np.asarray(p[:, :, c - r : c + r + 1, c - r : c + r + 1], dtype=np.float64).reshape(
                n, self.n_bands, -1
            )
            # an all-NaN window gives NaN (filled below) with numpy's 'Mean of empty slice' /
            # 'Degrees of freedom' RuntimeWarnings, which say nothing here
            with (
                np.errstate(invalid="ignore", divide="ignore"),
                warnings.catch_warnings(action="ignore", category=RuntimeWarning),
            ):
                out[:, col : col + self.n_bands] = np.nanmean(win, axis=2)
                out[:, col + self.n_bands : col + 2 * self.n_bands] = np.nanstd(win, axis=2)
        np.nan_to_num(out, copy=False, nan=NAN_FILL, posinf=NAN_FILL, neginf=NAN_FILL)
        return out

    # -- blocks ----------------------------------------------------------------------------------
    def from_block(self, block: np.ndarray) -> np.ndarray:
        """(bands, H + 2*halo, W + 2*halo) -> (H * W, f) float32, C-contiguous."""
        blk = np.asarray(block)
        if blk.ndim != 3 or blk.shape[0] != self.n_bands:
            raise ValueError(f"block must be ({self.n_bands}, H, W), got {blk.shape}")
        h = self.halo
        H, W = blk.shape[1] - 2 * h, blk.shape[2] - 2 * h
        if H <= 0 or W <= 0:
            raise ValueError(f"block {blk.shape} is smaller than its halo {h}")
        out = np.empty((H, W, self.n_features), dtype=np.float32)
        centre = blk[:, h : h + H, h : h + W].astype(np.float32, copy=False)
        out[:, :, : self.n_bands] = np.moveaxis(centre, 0, -1)
        col = self.n_bands
        for v in self._indices(centre):
            out[:, :, col] = v
            col += 1
        if self.patch_stats:
            mean, std = window_mean_std(blk, self.patch_size)
            out[:, :, col : col + self.n_bands] = np.moveaxis(mean, 0, -1)
            out[:, :, col + self.n_bands : col + 2 * self.n_bands] = np.moveaxis(std, 0, -1)
        out = out.reshape(H * W, self.n_features)
        np.nan_to_num(out, copy=False, nan=NAN_FILL, posinf=NAN_FILL, neginf=NAN_FILL)
        return out


def _window_sum(a: np.ndarray, k: int) -> np.ndarray:
    """'Valid' k x k box sums over the last two axes of a float64 array.

    Separable running sums along each line (``scipy.ndimage.uniform_filter1d``): the
    rounding error is that of adding one line, never the whole block.
    """
    r = k // 2
    rows = uniform_filter1d(a, k, axis=-2, mode="constant")[..., r : a.shape[-2] - r, :]
    return uniform_filter1d(rows, k, axis=-1, mode="constant")[..., r : a.shape[-1] - r] * float(k * k)


def window_mean_std(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring mean and std (ddof=0) over every k x k window of a (bands, H+k-1, W+k-1) block.

    Returns float32 (bands, H, W) arrays, NaN where a window has no valid pixel.
    """
    x = np.asarray(block, dtype=np.float32)
    valid = np.isfinite(x)
    # Per-band offset (mean of the valid pixels): the stats are shift-invariant, and centring
    # keeps the sums of squares from cancelling.
    cntb = valid.sum(axis=(1, 2))
    off = np.where(cntb > 0, np.where(valid, x, 0).sum(axis=(1, 2), dtype=np.float64) / np.maximum(cntb, 1), 0.0)
    xc = x - off[:, None, None].astype(np.float64)
    xc[~valid] = 0.0
    cnt = np.rint(_window_sum(valid.astype(np.float64), k))  # exact integer counts
    s1 = _window_sum(xc, k)
    np.multiply(xc, xc, out=xc)
    s2 = _window_sum(xc, k)
    empty = cnt < 0.5
    cnt[empty] = 1.0
    m = s1 / cnt
    var = s2 / cnt
    var -= m * m
    np.maximum(var, 0.0, out=var)
    std = np.sqrt(var)
    m += off[:, None, None]
    m[empty] = np.nan
    std[empty] = np.nan
    return m.astype(np.float32), std.astype(np.float32)
