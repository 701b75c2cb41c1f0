"""Per-pixel features for the classical baselines, identical from patches and from blocks.

A :class:`FeatureSpec` (built from a :class:`~pipeline.sampling.settings.FeatureConfig` and the
model's band names and patch size) turns

* training / evaluation patches ``(n, bands, k, k)`` into ``(n, f)`` rows
  (:meth:`FeatureSpec.from_patches`), and
* mapping blocks ``(bands, H + 2h, W + 2h)`` into ``(H * W, f)`` rows
  (:meth:`FeatureSpec.from_block`, with ``h = FeatureSpec.halo``),

so that the row of block pixel ``[i, j]`` is bit-identical to the row of the patch centred on
block pixel ``[i + h, j + h]``. Feature columns, in order (see :meth:`FeatureSpec.names`):

1. the centre pixel's band values (one per band);
2. spectral indices (``ndvi``, ``ndwi``, ``ndbi``, ``nbr``), normalised differences of named
   bands (see :data:`BAND_ALIASES`): those the config lists, or with ``indices: auto`` (the
   default) every index whose bands the names identify without doubt (:func:`auto_indices`);
3. with ``patch_stats`` (the default) and a patch size k > 1: the mean of each band over the
   k x k window the patch models see, then the standard deviation (population, ddof=0), both
   ignoring NaN.

NaN handling, the same in both paths: NaN band values stay NaN through the arithmetic, an index
whose denominator is 0 is 0, window statistics over a window with no valid pixel are NaN, and
finally every NaN feature is replaced by 0 (:data:`NAN_FILL`). Pixels whose own bands are NaN are
masked by the mapper.

Window statistics are computed once per mapping window, not per pixel: k x k box sums of values,
squares and valid counts in float64 (:func:`box_sums`), after subtracting a fixed per-band
``offset`` (the training pixels' mean, so that sums of squares do not cancel). Each box sum is
built from sums of 1, 2, 4, 8, ... pixels along rows, then columns: ``log2(k)`` passes over the
window rather than ``k``, and, because every output value is the same expression of the same
inputs whatever its position, the block path and the patch path (which runs the same code on a
k x k window) give bit-identical features. ``tests/test_features.py`` checks both against a
direct ``nanmean`` / ``nanstd`` of each window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core.errors import InputError

#: Value that replaces NaN features (nodata, empty windows, undefined indices).
NAN_FILL = 0.0

#: Accepted band names (case-insensitive, after stripping spaces, '-' and '_') per role: first the
#: names that say what a band is, then Sentinel-2's band codes (:data:`SENTINEL2_CODES`).
BAND_ALIASES: dict[str, tuple[str, ...]] = {
    "blue": ("blue", "coastalblue", "b2", "b02"),
    "green": ("green", "g", "b3", "b03"),
    "red": ("red", "r", "b4", "b04"),
    "nir": ("nir", "nir08", "nir1", "nearinfrared", "nearir", "b8", "b08", "b8a"),
    "swir1": ("swir1", "swir16", "swir", "shortwaveinfrared1", "b11"),
    "swir2": ("swir2", "swir22", "shortwaveinfrared2", "b12"),
}

#: Band codes that name a Sentinel-2 band only when the raster is Sentinel-2: Landsat's ``B4`` is
#: red on Landsat 8 but near infrared on Landsat 5/7, and Landsat 8's ``B8`` and ``B11`` are the
#: panchromatic and a thermal band. ``indices: auto`` reads them only when a band is named ``B8A``,
#: which no other sensor has; a listed index reads them always (the user chose the index).
SENTINEL2_CODES = frozenset({"b2", "b02", "b3", "b03", "b4", "b04", "b8", "b08", "b8a", "b11", "b12"})

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


def _auto_band(role: str, band_names: Sequence[str]) -> int | None:
    """The band of ``role`` for ``indices: auto``: the band whose name comes first in the role's
    aliases (Sentinel-2's ``B08`` before ``B8A``), Sentinel-2 codes only on a Sentinel-2 raster;
    None when no band, or two bands of the same name, could be it."""
    names = [_norm(b) for b in band_names]
    sentinel2 = "b8a" in names
    for alias in BAND_ALIASES[role]:
        if alias in SENTINEL2_CODES and not sentinel2:
            continue
        hits = [i for i, b in enumerate(names) if b == alias]
        if len(hits) == 1:
            return hits[0]
        if hits:
            return None
    return None


def auto_indices(band_names: Sequence[str]) -> tuple[str, ...]:
    """The indices of :data:`INDEX_BANDS` that ``indices: auto`` computes for these bands: those
    whose two bands the names identify (see :func:`_auto_band`), in table order."""
    return tuple(ix for ix, roles in INDEX_BANDS.items() if all(_auto_band(r, band_names) is not None for r in roles))


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a model uses; see the module docstring for the column order.

    ``offset``: the per-band value subtracted before the window sums (a model's training mean;
    None: 0). It changes the rounding of the window statistics, not their value, and a fitted
    model keeps it, so that its features stay the same after saving and loading.
    """

    band_names: tuple[str, ...]
    indices: tuple[str, ...] = ()
    patch_stats: bool = False
    patch_size: int = 1
    offset: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.patch_stats and self.patch_size % 2 != 1:
            raise ValueError(f"patch_size must be odd, got {self.patch_size}")
        for ix in self.indices:
            if ix not in INDEX_BANDS:
                raise InputError(f"features.indices: unknown index {ix!r}; choose from {', '.join(INDEX_BANDS)}")
        if self.offset is not None and len(self.offset) != self.n_bands:
            raise ValueError(f"offset has {len(self.offset)} values for {self.n_bands} bands")
        _ = self.index_bands  # resolve now so that a missing band fails at construction

    @classmethod
    def from_config(cls, cfg: Any, band_names: Sequence[str], patch_size: int) -> FeatureSpec:
        """From a ``FeatureConfig`` (None: centre bands only). ``indices: auto`` becomes the
        indices the band names allow (:func:`auto_indices`)."""
        if cfg is None:
            return cls(tuple(band_names), (), False, int(patch_size))
        indices = getattr(cfg, "indices", ()) or ()
        return cls(
            tuple(band_names),
            auto_indices(band_names) if indices == "auto" else tuple(indices),
            bool(getattr(cfg, "patch_stats", False)),
            int(patch_size),
        )

    @property
    def index_bands(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for ix in self.indices:
            a, b = INDEX_BANDS[ix]
            auto = (_auto_band(a, self.band_names), _auto_band(b, self.band_names))
            if auto[0] is not None and auto[1] is not None:
                out.append((auto[0], auto[1]))
            else:
                out.append((resolve_band(a, self.band_names, ix), resolve_band(b, self.band_names, ix)))
        return out

    @property
    def context(self) -> bool:
        """Window statistics are computed: ``patch_stats`` and a window larger than the pixel."""
        return self.patch_stats and self.patch_size > 1

    @property
    def halo(self) -> int:
        """Pixels of context needed around an output pixel."""
        return self.patch_size // 2 if self.context else 0

    @property
    def n_bands(self) -> int:
        return len(self.band_names)

    @property
    def n_features(self) -> int:
        return self.n_bands + len(self.indices) + (2 * self.n_bands if self.context else 0)

    def names(self) -> list[str]:
        out = list(self.band_names) + list(self.indices)
        if self.context:
            out += [f"{b}_mean" for b in self.band_names] + [f"{b}_std" for b in self.band_names]
        return out

    def describe(self) -> dict[str, Any]:
        """What the model sees, for its fit report: centre pixel, indices, window statistics."""
        return {
            "centre_pixel": True,
            "indices": list(self.indices),
            "context_stats": ["mean", "std"] if self.context else [],
            "window": self.patch_size if self.context else 1,
            "bands": list(self.band_names),
        }

    # -- shared pieces -------------------------------------------------------------------------
    def _indices(self, centre: np.ndarray) -> list[np.ndarray]:
        """centre: (bands, ...) float32 -> one array per index, same trailing shape."""
        out = []
        for ia, ib in self.index_bands:
            a, b = centre[ia], centre[ib]
            den = a + b
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.asarray((a - b) / den, dtype=np.float32)
            v[den == 0] = 0.0  # undefined: 0 (NaN bands stay NaN, filled later)
            out.append(v)
        return out

    def _offsets(self) -> np.ndarray:
        return np.zeros(self.n_bands) if self.offset is None else np.asarray(self.offset, dtype=np.float64)

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
        if self.context:
            k, r = self.patch_size, self.patch_size // 2
            if kk < k:
                raise ValueError(f"patch_stats needs patches of at least {k} x {k}, got {kk} x {kk}")
            win = p[:, :, c - r : c + r + 1, c - r : c + r + 1]
            off = self._offsets()
            for b in range(self.n_bands):  # one band at a time: the float64 copies stay small
                mean, std = window_mean_std(win[:, b], k, off[b])
                out[:, col + b] = mean[:, 0, 0]
                out[:, col + self.n_bands + b] = std[:, 0, 0]
        np.nan_to_num(out, copy=False, nan=NAN_FILL, posinf=NAN_FILL, neginf=NAN_FILL)
        return out

    # -- blocks ----------------------------------------------------------------------------------
    def from_block(self, block: np.ndarray) -> np.ndarray:
        """(bands, H + 2*halo, W + 2*halo) -> (H * W, f) float32, C-contiguous."""
        flat = self.planes_from_block(block)
        out = np.empty((flat.shape[1], self.n_features), dtype=np.float32)
        step = 4096  # transposed in pieces that stay in cache: 3x faster than one strided copy here
        for a in range(0, flat.shape[1], step):
            out[a : a + step] = flat[:, a : a + step].T
        return out

    def planes_from_block(self, block: np.ndarray) -> np.ndarray:
        """(bands, H + 2*halo, W + 2*halo) -> (f, H * W) float32, C-contiguous: the features of
        :meth:`from_block` as one plane per feature (``from_block`` is its transpose), for kernels
        whose innermost loop runs over pixels and would otherwise transpose the rows back."""
        blk = np.asarray(block)
        if blk.ndim != 3 or blk.shape[0] != self.n_bands:
            raise ValueError(f"block must be ({self.n_bands}, H, W), got {blk.shape}")
        h = self.halo
        H, W = blk.shape[1] - 2 * h, blk.shape[2] - 2 * h
        if H <= 0 or W <= 0:
            raise ValueError(f"block {blk.shape} is smaller than its halo {h}")
        planes = np.empty((self.n_features, H, W), dtype=np.float32)
        centre = blk[:, h : h + H, h : h + W].astype(np.float32, copy=False)
        planes[: self.n_bands] = centre
        col = self.n_bands
        for v in self._indices(centre):
            planes[col] = v
            col += 1
        if self.context:
            off = self._offsets()
            for b in range(self.n_bands):  # one band at a time: the float64 copies stay small
                planes[col + b], planes[col + self.n_bands + b] = window_mean_std(blk[b], self.patch_size, off[b])
        flat = planes.reshape(self.n_features, H * W)
        np.copyto(flat, np.float32(NAN_FILL), where=~np.isfinite(flat))
        return flat


def _line_sums(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """'Valid' sums of ``k`` consecutive values along ``axis`` (length n -> n - k + 1).

    Built from sums of 1, 2, 4, ... values (the binary digits of k), so each output value is
    the same expression of its k inputs wherever it lies: a window cut out alone gives the
    bit-identical sum. ``log2(k)`` passes over the array instead of ``k``.
    """
    n = a.shape[axis]
    m = n - k + 1

    def cut(x: np.ndarray, start: int, length: int) -> np.ndarray:
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(start, start + length)
        return x[tuple(sl)]

    pw, size, start = a, 1, 0  # pw[i] = sum of a[i : i + size]
    out: np.ndarray | None = None
    while True:
        if k & size:
            part = cut(pw, start, m)
            if out is None:
                out = part.copy()
            else:
                out += part
            start += size
        if 2 * size > k:
            break
        length = pw.shape[axis] - size
        pw = cut(pw, 0, length) + cut(pw, size, length)
        size *= 2
    assert out is not None
    return out


def box_sums(a: np.ndarray, k: int) -> np.ndarray:
    """'Valid' k x k box sums over the last two axes: (..., H + k - 1, W + k - 1) -> (..., H, W).

    Rows first, then columns, by :func:`_line_sums`: the same float operations for every output
    value, so the sums of a block and of a window cut from it are bit-identical.
    """
    return _line_sums(_line_sums(a, k, a.ndim - 1), k, a.ndim - 2)


def window_mean_std(x: np.ndarray, k: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring mean and std (ddof=0) over every k x k window of one band.

    x: (..., H + k - 1, W + k - 1), any real dtype -> float32 (..., H, W) mean and std, NaN
    where a window has no valid pixel. ``offset`` is subtracted before the float64 sums (see the
    module docstring) and added back to the mean.
    """
    v = np.asarray(x, dtype=np.float64) - offset
    valid = np.isfinite(v)
    full = bool(valid.all())
    if not full:
        v[~valid] = 0.0
    s1 = box_sums(v, k)
    np.multiply(v, v, out=v)
    s2 = box_sums(v, k)
    # a window without NaN has k * k values: dividing by the scalar rounds as dividing by the count would
    cnt: np.ndarray | float = float(k * k)
    empty = None
    if not full:
        cnt = box_sums(valid.astype(np.float64), k)  # exact integer counts
        empty = cnt < 0.5
        cnt[empty] = 1.0
    s1 /= cnt  # the mean (of the offset values)
    s2 /= cnt
    s2 -= s1 * s1  # the variance
    np.maximum(s2, 0.0, out=s2)
    np.sqrt(s2, out=s2)
    s1 += offset
    if empty is not None:
        s1[empty] = np.nan
        s2[empty] = np.nan
    return s1.astype(np.float32), s2.astype(np.float32)
