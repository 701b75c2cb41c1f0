"""Patch tiling: k x k patches centred on labelled pixels, streamed to a memory-mapped store.

The store is a ``.npy`` file of shape ``(n, bands, k, k)`` float32 that
``numpy.load(path, mmap_mode="r")`` opens without reading it; row ``i`` is the
patch of sample ``i`` of the sample table. Pixels outside the raster (patches at
the image edge) and nodata pixels are NaN, so every consumer can mask them.
Extraction reads one window (plus a k//2 halo) at a time, so memory follows
the window size, never the scene size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window
from tqdm import tqdm

from pipeline.atomic import atomic_path
from pipeline.raster import RasterStack


def extract_patches(stack: RasterStack, samples: pd.DataFrame, patch_size: int, out_path: Path,
                    window_size: int = 512, progress: bool = True) -> Path:
    """Write the patch store for ``samples`` (columns ``row``, ``col``) to ``out_path``.

    Returns ``out_path``. The file is written under a temporary name and renamed
    when complete, so a crash never leaves a store that looks finished.
    """
    if patch_size % 2 == 0:
        raise ValueError("patch_size must be odd")
    h = patch_size // 2
    n = len(samples)
    out_path = Path(out_path)
    rows = samples["row"].to_numpy()
    cols = samples["col"].to_numpy()
    wr, wc = rows // window_size, cols // window_size
    order = np.lexsort((wc, wr))
    keys = wr[order] * (1 << 32) + wc[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], n]
    with atomic_path(out_path) as tmp:
        store = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(n, stack.count, patch_size, patch_size))
        for s, e in tqdm(list(zip(starts, ends)), desc="patches", unit="win", disable=not progress, leave=False):
            idx = order[s:e]
            r0, c0 = int(wr[idx[0]]) * window_size, int(wc[idx[0]]) * window_size
            win = Window(c0, r0, min(window_size, stack.grid.width - c0), min(window_size, stack.grid.height - r0))
            block = stack.read(win, halo=h)  # (bands, H + 2h, W + 2h)
            view = sliding_window_view(block, (patch_size, patch_size), axis=(1, 2))  # (bands, H, W, k, k)
            store[idx] = np.moveaxis(view[:, rows[idx] - r0, cols[idx] - c0], 0, 1)
        store.flush()
        del store
    return out_path


def open_patches(path: Path) -> np.ndarray:
    """Open a patch store read-only without loading it: (n, bands, k, k) float32 memmap."""
    return np.load(path, mmap_mode="r")
