"""Patch tiling: k x k patches centred on labelled pixels, streamed to a memory-mapped store.

The store is a ``.npy`` file of shape ``(n, bands, k, k)`` that
``numpy.load(path, mmap_mode="r")`` opens without reading it; row ``i`` is the
patch of sample ``i`` of the sample table. It keeps the raster's own dtype
when that holds every value exactly (8- and 16-bit integers: half or a quarter
of float32 on disk and in the page cache); other rasters are stored as float32.
An integer store marks "no value" (nodata, or outside the raster at the image
edge) with one fill value per band, written to the ``<name>.json`` sidecar;
a float32 store marks it with NaN. :func:`open_patches` hides the difference:
:class:`PatchStore` decodes any rows it is asked for to float32 with NaN, which
is bit for bit what the float32 path gives (integers up to 16 bits are exact
in float32).

Extraction reads one window (plus a k//2 halo) at a time, and cuts and writes
the patches of a window in chunks of bounded size, so memory follows the
window size and the chunk budget, never the scene size, the number of samples
or the number of bands.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.windows import Window
from tqdm import tqdm

from pipeline.core.atomic import atomic_path, reserve_space
from pipeline.core.cancel import check_cancelled
from pipeline.inputs.raster import RasterStack

log = logging.getLogger(__name__)

#: Bytes of float32 patches cut from a window, decoded or fed to a model at once. Small on
#: purpose: transient copies of this size are what the C allocator keeps after they are freed.
CHUNK_BYTES = 8 * 2**20
#: Bytes of one float32 window (all bands) read for patch extraction or mapping.
WINDOW_BYTES = 32 * 2**20
#: Integer dtypes that float32 holds exactly, i.e. that a store can keep without changing a value.
EXACT_INT_DTYPES = ("uint8", "int8", "uint16", "int16")


def sidecar_path(path: Path) -> Path:
    """The JSON file next to a store that records its dtype and per-band fill values."""
    return Path(path).with_suffix(".json")


def storage_dtype(dtypes: list[str], nodata: list[float | None]) -> tuple[np.dtype, list[float] | None]:
    """The dtype a store keeps for bands of ``dtypes`` and, for an integer store, each band's fill.

    The fill of a band is its nodata value when the dtype can hold it (such pixels are
    "no value" anyway, so the fill never collides with data); otherwise the dtype's
    extreme value (max for unsigned, min for signed), whose use as data is checked
    while writing (see :func:`extract_patches`). Returns ``(float32, None)`` for float
    or wide integer bands.
    """
    if not dtypes or any(str(d) not in EXACT_INT_DTYPES for d in dtypes):
        return np.dtype(np.float32), None
    dt = np.result_type(*[np.dtype(d) for d in dtypes])
    if dt.name not in EXACT_INT_DTYPES:  # e.g. uint16 + int16 -> int32: not worth it, use float32
        return np.dtype(np.float32), None
    info = np.iinfo(dt)
    extreme = info.min if info.min < 0 else info.max
    fills = []
    for nd in nodata:
        if nd is not None and np.isfinite(nd) and float(nd).is_integer() and info.min <= nd <= info.max:
            fills.append(float(nd))
        else:
            fills.append(float(extreme))
    return dt, fills


def window_for_bands(window_size: int, bands: int, halo: int = 0, budget: int | None = None) -> int:
    """``window_size``, shrunk (to a multiple of 16, at least 32) so that one float32 window of
    ``bands`` bands plus its halo stays within ``budget`` bytes (default :data:`WINDOW_BYTES`).

    A window of many bands is large on its own: 218 bands x 512^2 x 4 B = 230 MB, and a model's
    features or activations for it as much again. Few bands keep ``window_size`` unchanged.
    """
    budget = WINDOW_BYTES if budget is None else budget
    fit = int(np.sqrt(budget / (4.0 * max(bands, 1)))) - 2 * halo
    return int(min(window_size, max(32, fit // 16 * 16)))


def _row_chunks(n: int, row_bytes: int, budget: int | None = None) -> Iterator[tuple[int, int]]:
    budget = CHUNK_BYTES if budget is None else budget
    step = max(1, budget // max(row_bytes, 1))
    for s in range(0, n, step):
        yield s, min(n, s + step)


class _FillCollision(Exception):
    """A band without nodata holds its dtype's extreme value as data: the integer store cannot mark gaps."""


def _encode(x: np.ndarray, dtype: np.dtype, fill: np.ndarray | None, strict: np.ndarray | None) -> np.ndarray:
    """float32 patches (m, bands, k, k) with NaN -> the store's dtype."""
    if fill is None:
        return x
    gap = np.isnan(x)
    fb = fill[None, :, None, None]
    if strict is not None and strict.any() and np.any((x == fb) & strict[None, :, None, None]):
        raise _FillCollision
    return np.where(gap, fb, x).astype(dtype)


def extract_patches(
    stack: RasterStack,
    samples: pd.DataFrame,
    patch_size: int,
    out_path: Path,
    window_size: int = 512,
    progress: bool = True,
    keep_dtype: bool = True,
    chunk_bytes: int | None = None,
) -> Path:
    """Write the patch store for ``samples`` (columns ``row``, ``col``) to ``out_path``.

    ``keep_dtype=False`` forces a float32 store (the reference the dtype-preserving
    store is tested against). Returns ``out_path``. The store and its sidecar are
    written under temporary names and renamed when complete, so a crash never leaves
    a store that looks finished.
    """
    if patch_size % 2 == 0:
        raise ValueError("patch_size must be odd")
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    dtype, fills = (
        storage_dtype([str(d) for d in stack.dtypes], list(stack.nodata))
        if keep_dtype
        else (np.dtype(np.float32), None)
    )
    try:
        return _extract(stack, samples, patch_size, Path(out_path), window_size, progress, dtype, fills, chunk_bytes)
    except _FillCollision:
        log.info("patches: a band without nodata uses its dtype's extreme value as data; storing float32")
        return _extract(
            stack, samples, patch_size, Path(out_path), window_size, progress, np.dtype(np.float32), None, chunk_bytes
        )


def _extract(
    stack: RasterStack,
    samples: pd.DataFrame,
    patch_size: int,
    out_path: Path,
    window_size: int,
    progress: bool,
    dtype: np.dtype,
    fills: list[float] | None,
    chunk_bytes: int,
) -> Path:
    h = patch_size // 2
    n = len(samples)
    bands = stack.count
    window_size = window_for_bands(window_size, bands, halo=h)
    rows = samples["row"].to_numpy()
    cols = samples["col"].to_numpy()
    wr, wc = rows // window_size, cols // window_size
    order = np.lexsort((wc, wr))
    keys = wr[order] * (1 << 32) + wc[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if n else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], n].astype(np.int64)
    fill = None if fills is None else np.asarray(fills, dtype=np.float32)
    strict = None
    if fills is not None:  # bands whose fill is not their nodata: the fill must never occur as data
        strict = np.array([nd is None or float(nd) != f for nd, f in zip(stack.nodata, fills)])
    row_bytes = bands * patch_size * patch_size * 4
    side = sidecar_path(out_path)
    with atomic_path(out_path) as tmp, atomic_path(side) as tmp_side:
        # The header and the file's size come from numpy; the rows are written with pwritev, not
        # through the map: written pages of a map stay in the process's resident memory.
        store = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, bands, patch_size, patch_size))
        offset, total = int(store.offset), int(store.offset + store.nbytes)
        del store
        reserve_space(tmp, total, out_path)  # a full disk: one clear error, not SIGBUS
        stored_row = dtype.itemsize * bands * patch_size * patch_size
        fd = os.open(tmp, os.O_WRONLY)
        try:
            for s, e in tqdm(list(zip(starts, ends)), desc="patches", unit="win", disable=not progress, leave=False):
                check_cancelled()
                idx = order[s:e]
                r0, c0 = int(wr[idx[0]]) * window_size, int(wc[idx[0]]) * window_size
                win = Window(c0, r0, min(window_size, stack.grid.width - c0), min(window_size, stack.grid.height - r0))
                block = stack.read(win, halo=h)  # (bands, H + 2h, W + 2h) float32
                view = sliding_window_view(block, (patch_size, patch_size), axis=(1, 2))  # (bands, H, W, k, k)
                for a, b in _row_chunks(len(idx), row_bytes, chunk_bytes):
                    sub = np.sort(idx[a:b])  # ascending rows: runs of consecutive rows are one write
                    cut = np.moveaxis(view[:, rows[sub] - r0, cols[sub] - c0], 0, 1)
                    _write_rows(fd, offset, stored_row, sub, np.ascontiguousarray(_encode(cut, dtype, fill, strict)))
                del view, block
            os.fsync(fd)
        finally:
            os.close(fd)
        Path(tmp_side).write_text(
            json.dumps({"dtype": dtype.name, "fill": fills, "shape": [n, bands, patch_size, patch_size]})
        )
    return out_path


def _write_rows(fd: int, offset: int, row_bytes: int, rows: np.ndarray, data: np.ndarray) -> None:
    """Write ``data[i]`` to row ``rows[i]`` (ascending) of the store open as ``fd``."""
    buf = data.reshape(-1).view(np.uint8).data  # a memoryview of the bytes
    starts = np.flatnonzero(np.r_[True, np.diff(rows) != 1])
    ends = np.r_[starts[1:], len(rows)]
    for a, b in zip(starts.tolist(), ends.tolist()):
        part = buf[a * row_bytes : b * row_bytes]
        done = 0
        while done < len(part):  # pwritev may write less than asked
            done += os.pwritev(fd, [part[done:]], offset + int(rows[a]) * row_bytes + done)


class PatchStore:
    """Read-only patches of a store (or of a subset of its rows), decoded on access.

    Behaves as a float32 array of shape ``(n, bands, k, k)`` with NaN for "no value" as far
    as the models need: ``len``, ``shape``, ``ndim``, ``dtype``, ``store[rows]`` (a slice, an
    integer array, a boolean mask or an int; optionally followed by indices of the other
    axes) and ``numpy.asarray(store)``. Only the rows asked for are read and decoded, so a
    training subset is an index list over the memory-mapped file, never a copy of it.
    :meth:`take` composes index lists.
    """

    def __init__(
        self,
        raw: np.ndarray,
        fill: list[float] | None = None,
        index: np.ndarray | None = None,
        path: Path | None = None,
    ):
        self.raw = raw
        self.fill = None if fill is None else np.asarray(fill, dtype=np.float32)
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.path = path

    # -- array-like surface ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        n = self.raw.shape[0] if self.index is None else len(self.index)
        return (n, *self.raw.shape[1:])

    @property
    def ndim(self) -> int:
        return self.raw.ndim

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def storage_dtype(self) -> np.dtype:
        return self.raw.dtype

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded float32 rows (what ``numpy.asarray`` would allocate)."""
        return int(np.prod(self.shape)) * 4

    def take(self, idx: np.ndarray) -> PatchStore:
        """The rows ``idx`` (positions in this store) as a new store over the same file."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        rows = idx.astype(np.int64) if self.index is None else self.index[idx]
        return PatchStore(self.raw, None if self.fill is None else self.fill.tolist(), rows, self.path)

    def _rows(self, key: Any) -> np.ndarray | slice:
        if isinstance(key, slice):
            return key if self.index is None else self.index[key]
        k = np.asarray(key)
        if k.dtype == bool:
            k = np.flatnonzero(k)
        return k.astype(np.int64) if self.index is None else self.index[k]

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Stored values -> float32 with NaN."""
        x = raw.astype(np.float32)
        if self.fill is not None:
            x[raw == self.fill.astype(raw.dtype)[None, :, None, None]] = np.nan
        return x

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Stored rows ``rows`` (ascending) as a new array.

        A store on disk is read with ``preadv`` into a fresh buffer rather than through the
        memory map: pages touched through a map count in the process's resident memory until
        it ends (the whole store, once an epoch has visited every row), pages read stay in the
        OS page cache, which the kernel reclaims as it needs.
        """
        raw = self.raw
        if self.path is None or not isinstance(raw, np.memmap) or not hasattr(os, "preadv"):
            return np.asarray(raw[rows])
        out = np.empty((len(rows), *raw.shape[1:]), raw.dtype)
        if len(rows) == 0:
            return out
        row_bytes = out.itemsize * int(np.prod(raw.shape[1:]))
        starts = np.flatnonzero(np.r_[True, np.diff(rows) != 1])  # runs of consecutive rows: one read each
        ends = np.r_[starts[1:], len(rows)]
        view = out.reshape(-1).view(np.uint8).data  # a memoryview of the bytes
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for a, b in zip(starts.tolist(), ends.tolist()):
                want = (b - a) * row_bytes
                got = os.preadv(fd, [view[a * row_bytes : b * row_bytes]], int(raw.offset) + int(rows[a]) * row_bytes)
                if got != want:
                    raise OSError(f"{self.path}: short read ({got} of {want} bytes); the patch store is truncated")
        finally:
            os.close(fd)
        return out

    def _read(self, rows: np.ndarray | slice) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(self.raw.shape[0], dtype=np.int64)[rows]
        if rows.ndim == 0:
            return self._read(rows[None])[0]
        # Read in ascending file order, return in the order asked for.
        srt = np.argsort(rows, kind="stable")
        if np.all(srt[1:] > srt[:-1]):  # already ascending (slices, sorted batches): no reordering copy
            return self.decode(self._gather(rows))
        out = np.empty((len(rows), *self.raw.shape[1:]), np.float32)
        out[srt] = self.decode(self._gather(rows[srt]))
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        rows = self._rows(key)
        if not rest:
            return self._read(rows)
        # e.g. store[:, :, c, c]: decode in bounded chunks, keep only the selected part of each.
        # A copy of it: a basic-index selection is a view that would keep its whole decoded chunk
        # alive until the end (218 bands: the centre pixels held all 400 MB of decoded patches).
        if isinstance(rows, slice):
            rows = np.arange(self.raw.shape[0], dtype=np.int64)[rows]
        if rows.ndim == 0:
            return self._read(rows)[rest]
        parts = [self._read(rows[a:b])[(slice(None), *rest)].copy() for a, b in self.row_chunks(len(rows))]
        return np.concatenate(parts) if parts else self._read(rows[:0])[(slice(None), *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def row_chunks(self, n: int | None = None, budget: int | None = None) -> Iterator[tuple[int, int]]:
        """(start, stop) row ranges whose decoded float32 patches stay within ``budget`` bytes."""
        return _row_chunks(len(self) if n is None else n, int(np.prod(self.raw.shape[1:])) * 4, budget)

    # -- pickling: loader workers reopen the file instead of receiving its contents ------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["raw"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.raw is None:
            self.raw = np.load(self.path, mmap_mode="r")


def row_chunks(patches: Any, budget: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges of ``patches`` (an array or a :class:`PatchStore`) of bounded float32 size."""
    return _row_chunks(len(patches), int(np.prod(patches.shape[1:])) * 4, budget)


def open_patches(path: Path) -> PatchStore:
    """Open a patch store read-only without loading it (a :class:`PatchStore` over a memmap).

    A store without a sidecar (written before stores kept their dtype) is float32 with NaN.
    """
    path = Path(path)
    raw = np.load(path, mmap_mode="r")
    side = sidecar_path(path)
    fill = None
    if side.exists():
        meta = json.loads(side.read_text())
        fill = meta.get("fill")
        if np.dtype(meta["dtype"]) != raw.dtype:
            raise ValueError(f"{path}: dtype {raw.dtype} differs from its sidecar {side} ({meta['dtype']})")
    return PatchStore(raw, fill, None, path)


def _same_fill(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two stores mark "no value" alike: both float (no fill) or the same fill per band."""
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def concat_patch_stores(parts: list[Path], out_path: Path, chunk_bytes: int | None = None) -> Path:
    """Concatenate patch stores (same band count and patch size) along the sample axis into
    ``out_path``, in chunks of bounded size, so memory follows the chunk, not the stores.

    Stores of one dtype and fill values are copied as stored; otherwise (e.g. scenes of
    different dtypes or nodata) the result is float32 with NaN, decoded chunk by chunk.
    """
    stores = [open_patches(p) for p in parts]
    shape0 = stores[0].shape[1:]
    for p, st in zip(parts, stores):
        if st.shape[1:] != shape0:
            raise ValueError(f"{p}: patch store of shape {st.shape} does not match {parts[0]} ({stores[0].shape})")
    same = all(st.raw.dtype == stores[0].raw.dtype and _same_fill(st.fill, stores[0].fill) for st in stores)
    dtype = stores[0].raw.dtype if same else np.dtype(np.float32)
    fills = (None if stores[0].fill is None else stores[0].fill.tolist()) if same else None
    n = sum(len(st) for st in stores)
    out_path = Path(out_path)
    side = sidecar_path(out_path)
    with atomic_path(out_path) as tmp, atomic_path(side) as tmp_side:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, *shape0))
        reserve_space(tmp, int(out.offset + out.nbytes), out_path)  # a full disk: one clear error, not SIGBUS
        at = 0
        for st in stores:
            for a, b in st.row_chunks(budget=chunk_bytes):
                out[at + a : at + b] = st.raw[a:b] if same else st[a:b]
            at += len(st)
        out.flush()
        del out
        Path(tmp_side).write_text(json.dumps({"dtype": dtype.name, "fill": fills, "shape": [n, *shape0]}))
    del stores
    return out_path
