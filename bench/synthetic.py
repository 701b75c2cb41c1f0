"""Synthetic scenes of the benchmarks: spatially structured classes with overlapping spectra.

Shared by ``landcover bench baselines`` (:func:`make_scene`: a 6-band scene with texture) and
``landcover bench scale`` (:func:`write_raster`: any size and band count, pixel-interleaved, the
same classes on a coarser grid). Both write window by window, so memory stays bounded, and both
return a sample of labelled pixels to fit the models on. :func:`model_meta` describes a model
fitted on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BANDS = ["blue", "green", "red", "nir", "swir1", "swir2"]
CLASSES = ["water", "forest", "crop", "grass", "urban", "bare"]
CLASS_IDS = [1, 2, 3, 4, 5, 6]
COLORS = ["#1f78b4", "#33a02c", "#b2df8a", "#ffff99", "#e31a1c", "#b15928"]
# Mean reflectance (x 10000) per class and band.
SPECTRA = np.array(
    [
        [600, 700, 500, 300, 150, 100],
        [300, 500, 300, 3000, 1500, 700],
        [450, 750, 550, 3600, 2100, 1100],
        [500, 800, 700, 2900, 2300, 1400],
        [1000, 1100, 1200, 1900, 2200, 2000],
        [1100, 1300, 1500, 2200, 2700, 2400],
    ],
    dtype=np.float64,
)
NODATA = 0
TEXTURE = 0.15  # relative amplitude of the within-class texture
NOISE = 0.22  # relative per-pixel noise (classes overlap: the SVM keeps thousands of support vectors)
TILE = 512


class Scene:
    """Deterministic class and reflectance fields, evaluated window by window."""

    def __init__(self, seed: int = 0, n_waves: int = 6):
        rng = np.random.default_rng(seed)
        nc = len(CLASSES)
        # class "suitability" fields: sums of plane waves with wavelengths 150-900 px
        self.kc = rng.uniform(2 * np.pi / 900, 2 * np.pi / 150, size=(nc, n_waves))
        self.ang = rng.uniform(0, np.pi, size=(nc, n_waves))
        self.ph = rng.uniform(0, 2 * np.pi, size=(nc, n_waves))
        # per-band texture field (shared by all classes), wavelengths 20-80 px
        self.kt = rng.uniform(2 * np.pi / 80, 2 * np.pi / 20, size=(len(BANDS), 3))
        self.at = rng.uniform(0, np.pi, size=(len(BANDS), 3))
        self.pt = rng.uniform(0, 2 * np.pi, size=(len(BANDS), 3))
        self.seed = seed

    @staticmethod
    def _waves(r, c, k, a, p):
        out = 0.0
        for i in range(len(k)):
            out = out + np.sin(k[i] * (np.cos(a[i]) * c + np.sin(a[i]) * r) + p[i])
        return out

    def window(self, row0: int, col0: int, h: int, w: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(classes int (h, w), values uint16 (6, h, w)) for the window at (row0, col0)."""
        r = np.arange(row0, row0 + h, dtype=np.float32)[:, None]
        c = np.arange(col0, col0 + w, dtype=np.float32)[None, :]
        fields = np.stack([self._waves(r, c, self.kc[i], self.ang[i], self.ph[i]) for i in range(len(CLASSES))])
        cls = np.argmax(fields, axis=0)
        rng = np.random.default_rng([self.seed, row0, col0])
        vals = np.empty((len(BANDS), h, w), dtype=np.uint16)
        for b in range(len(BANDS)):
            tex = self._waves(r, c, self.kt[b], self.at[b], self.pt[b]) / 3.0  # in [-1, 1]
            v = SPECTRA[cls, b] * (1.0 + TEXTURE * tex + NOISE * rng.standard_normal((h, w)))
            vals[b] = np.clip(v, 1, 65535).astype(np.uint16)
        # nodata corner triangle
        nod = (r + c) < size * 0.03
        vals[:, nod] = NODATA
        return cls, vals


def make_scene(path: Path, size: int, seed: int = 0, n_sample: int = 26000) -> dict[str, np.ndarray]:
    """Write the synthetic raster; returns about ``n_sample`` labelled pixels {X (n, 6) float32, y, groups, xy}."""
    import rasterio
    from rasterio.transform import from_origin

    scene = Scene(seed)
    rng = np.random.default_rng(seed + 1)
    tile = min(TILE, max(16, size))
    tile = tile - tile % 16 or 16
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=len(BANDS),
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 4000000.0, 10.0, 10.0),
        nodata=NODATA,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress="deflate",
        predictor=2,
    )
    n_windows = (-(-size // tile)) ** 2
    sample_per_window = -(-n_sample // n_windows)
    Xs, ys, gs, xys = [], [], [], []
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = tuple(BANDS)
        g = 0
        for r0 in range(0, size, tile):
            for c0 in range(0, size, tile):
                h, w = min(tile, size - r0), min(tile, size - c0)
                cls, vals = scene.window(r0, c0, h, w, size)
                dst.write(vals, window=rasterio.windows.Window(c0, r0, w, h))
                n = min(sample_per_window, h * w)
                flat = rng.choice(h * w, size=n, replace=False)
                ok = vals.reshape(len(BANDS), -1)[0, flat] != NODATA
                flat = flat[ok]
                Xs.append(vals.reshape(len(BANDS), -1)[:, flat].T.astype(np.float32))
                ys.append(np.asarray(CLASS_IDS)[cls.ravel()[flat]])
                gs.append(np.full(len(flat), g))
                xys.append(np.stack([c0 + flat % w, r0 + flat // w], axis=1).astype(np.float64))
                g += 1
    return {
        "X": np.concatenate(Xs),
        "y": np.concatenate(ys).astype(np.int64),
        "groups": np.concatenate(gs).astype(np.int64),
        "xy": np.concatenate(xys),
    }


def band_names(n: int) -> list[str]:
    """``b001``, ``b002``, ...: the band names of an ``n``-band raster of :func:`write_raster`."""
    return [f"b{i:03d}" for i in range(1, n + 1)]


def spectra(n_bands: int) -> np.ndarray:
    """(classes, n_bands) mean reflectance: the 6-band :data:`SPECTRA`, interpolated across
    ``n_bands`` (smooth spectra, as a hyperspectral sensor sees them)."""
    pos = np.linspace(0, SPECTRA.shape[1] - 1, n_bands)
    return np.stack([np.interp(pos, np.arange(SPECTRA.shape[1]), s) for s in SPECTRA])


def write_raster(
    path: Path, size: int, n_bands: int, seed: int = 0, n_sample: int = 0, patch: int = 1
) -> dict[str, np.ndarray]:
    """Write a ``size x size x n_bands`` uint16 GeoTIFF (tiled 512, DEFLATE, pixel-interleaved)
    window by window, with the classes of :class:`Scene` (evaluated on a grid
    8x coarser, which keeps their 150-900 px structure and makes an 8192^2 raster cheap).

    Returns about ``n_sample`` labelled pixels: ``X`` (n, bands) float32, ``patches``
    (n, bands, patch, patch) float32, ``y``, ``groups`` (one per window), ``xy``.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    scene = Scene(seed)
    means = spectra(n_bands).astype(np.float32)
    rng = np.random.default_rng([seed, size, n_bands])
    tile = min(TILE, max(16, size - size % 16))
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=n_bands,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(500000.0, 4000000.0, 10.0, 10.0),
        nodata=NODATA,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress="deflate",
        predictor=2,
        interleave="pixel",
        BIGTIFF="IF_SAFER",
    )
    n_windows = (-(-size // tile)) ** 2
    per_window = -(-n_sample // n_windows) if n_sample else 0
    h_p = patch // 2
    X, P, ys, gs, xy = [], [], [], [], []
    step = 8
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = tuple(band_names(n_bands))
        g = 0
        for r0 in range(0, size, tile):
            for c0 in range(0, size, tile):
                h, w = min(tile, size - r0), min(tile, size - c0)
                r = np.arange(r0, r0 + h, step, dtype=np.float32)[:, None]
                c = np.arange(c0, c0 + w, step, dtype=np.float32)[None, :]
                fields = np.stack(
                    [scene._waves(r, c, scene.kc[i], scene.ang[i], scene.ph[i]) for i in range(len(scene.kc))]
                )
                cls = np.repeat(np.repeat(np.argmax(fields, axis=0), step, 0), step, 1)[:h, :w]
                vals = np.empty((n_bands, h, w), np.uint16)
                for b in range(n_bands):
                    noise = rng.standard_normal((h, w), dtype=np.float32)
                    v = means[cls, b] * (1.0 + NOISE * noise)
                    np.clip(v, 1, 65535, out=v)
                    vals[b] = v
                rr, cc = np.mgrid[r0 : r0 + h, c0 : c0 + w]
                vals[:, (rr + cc) < size * 0.03] = NODATA  # a nodata corner
                dst.write(vals, window=Window(c0, r0, w, h))
                if per_window and h > patch and w > patch:
                    n = min(per_window, (h - 2 * h_p) * (w - 2 * h_p))
                    pr = rng.integers(h_p, h - h_p, n)
                    pc = rng.integers(h_p, w - h_p, n)
                    ok = vals[0, pr, pc] != NODATA
                    pr, pc = pr[ok], pc[ok]
                    X.append(vals[:, pr, pc].T.astype(np.float32))
                    if patch > 1:
                        cut = (
                            np.stack([vals[:, a - h_p : a + h_p + 1, b - h_p : b + h_p + 1] for a, b in zip(pr, pc)])
                            if len(pr)
                            else np.empty((0, n_bands, patch, patch), np.uint16)
                        )
                        P.append(cut.astype(np.float32))
                    ys.append(np.asarray(CLASS_IDS)[cls[pr, pc]])
                    gs.append(np.full(len(pr), g))
                    xy.append(np.stack([c0 + pc + 0.5, r0 + pr + 0.5], axis=1).astype(np.float64))
                g += 1
    if not X:
        return {}
    out = {
        "X": np.concatenate(X),
        "y": np.concatenate(ys).astype(np.int64),
        "groups": np.concatenate(gs).astype(np.int64),
        "xy": np.concatenate(xy),
    }
    if P:
        out["patches"] = np.concatenate(P)
    return out


def model_meta(name: str, bands: list[str], patch_size: int = 1) -> Any:
    """The :class:`~pipeline.models.base.ModelMeta` of model ``name`` fitted on a synthetic scene
    with these bands (class ids, names and colours of :data:`CLASSES`)."""
    from pipeline.models.base import ModelMeta

    return ModelMeta(
        model=name,
        band_names=list(bands),
        class_ids=list(CLASS_IDS),
        class_names=list(CLASSES),
        class_colors=list(COLORS),
        patch_size=patch_size,
    )
