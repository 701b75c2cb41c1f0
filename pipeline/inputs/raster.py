"""Raster ingestion: a multi-band file or single-band files, read window by window.

:class:`RasterStack` presents one or several GeoTIFFs as a single
``(bands, rows, cols)`` float32 image on one grid. Reads are windowed (and may
reach outside the raster, which comes back as NaN), so memory depends on the
window, never on the raster size. Each band keeps its own nodata value; any
pixel whose value equals its band's nodata, or is not finite, becomes NaN.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from pipeline.core.errors import InputError, SourceUnavailableError, UnreadableInputError
from pipeline.core.text import short_list


class RasterAlignmentWarning(UserWarning):
    """A file of a stack was warped onto another grid (values resampled on the fly)."""


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a north-up grid."""
        t = self.transform
        return t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f

    def xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of pixel centres."""
        t = self.transform
        c = np.asarray(cols, dtype=np.float64) + 0.5
        r = np.asarray(rows, dtype=np.float64) + 0.5
        return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f

    def rowcol(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (row, col) containing map coordinates (floor)."""
        inv = ~self.transform
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        cols = inv.a * xs + inv.b * ys + inv.c
        rows = inv.d * xs + inv.e * ys + inv.f
        return np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)


def nodata_fits(value: float, dtype: str | np.dtype) -> bool:
    """Whether a pixel of ``dtype`` can hold nodata ``value``: an integer type only a whole number
    within its limits; a float type any value (NaN too; non-finite pixels count as nodata anyway)."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def check_nodata_fits(stack: RasterStack, value: float, key: str) -> None:
    """InputError naming ``key`` (``--nodata``, ``rasters.nodata``), ``value`` and the first band's
    file and data type that cannot hold it: such a value matches no pixel, so it cannot be meant,
    and applying it would silently drop the file's own nodata."""
    for i, dtype in enumerate(stack.dtypes):
        if not nodata_fits(value, dtype):
            info = np.iinfo(np.dtype(dtype))
            path = stack.paths[stack._band_index[i][0]]
            raise InputError(
                f"{key} {value:g}: {path} is {dtype}, whose pixels hold only whole numbers "
                f"{info.min}..{info.max}; give a value in that range or leave {key} out to keep the file's own"
            )


def _equals_nodata(raw: np.ndarray, nd: float) -> np.ndarray:
    """Where ``raw`` equals nodata ``nd`` in the band's own dtype (a value the dtype cannot hold matches nothing)."""
    if np.issubdtype(raw.dtype, np.integer):
        info = np.iinfo(raw.dtype)
        if not float(nd).is_integer() or not info.min <= nd <= info.max:
            return np.zeros(raw.shape, dtype=bool)
        return raw == int(nd)
    return raw == raw.dtype.type(nd)


#: Path prefixes of sources GDAL reads over a network (where a failed read may be transient).
NETWORK_PREFIXES = (
    "/vsicurl",
    "/vsis3",
    "/vsigs",
    "/vsiaz",
    "/vsiadls",
    "/vsioss",
    "/vsiswift",
    "/vsiwebhdfs",
    "/vsihdfs",
    "http://",
    "https://",
    "ftp://",
)
#: Network timeouts GDAL gets unless the environment sets them: without them a server that accepts
#: a connection and never answers blocks a read (and the process) for good.
NETWORK_TIMEOUTS = {"GDAL_HTTP_CONNECTTIMEOUT": "10", "GDAL_HTTP_TIMEOUT": "30"}


def ensure_network_timeouts() -> None:
    """Give GDAL the :data:`NETWORK_TIMEOUTS` the environment does not set. GDAL reads these from
    the environment at each request, in every thread; set here (not in a ``rasterio.Env``, which
    ends before the windows are read) so that every process that opens a stack, Dask workers
    included, has them."""
    for key, value in NETWORK_TIMEOUTS.items():
        os.environ.setdefault(key, value)


def read_failure(path: Path, window: Window, err: RasterioIOError, files: Sequence[str] = ()) -> Exception:
    """The error for a failed read of ``window`` of ``path``, keeping GDAL's own cause (rasterio
    says only "Read failed"): :class:`SourceUnavailableError` when the source is read over a
    network (possibly transient), else :class:`UnreadableInputError` (a damaged file, a VRT whose
    source is missing: reading again would fail again). ``files``: what GDAL reads for ``path``
    (a VRT's sources)."""
    cause = err.__cause__ or err.__context__ or err
    text = " ".join(str(cause).split()) or type(cause).__name__
    where = f"window of {int(window.width)} x {int(window.height)} px at column {int(window.col_off)}, row {int(window.row_off)}"
    names = [str(path), *map(str, files)]
    if (
        type(cause).__name__ == "CPLE_HttpResponseError"
        or "CURL error" in text
        or any(n.startswith(p) or p in text for p in NETWORK_PREFIXES for n in names)
    ):
        timeout = os.environ.get("GDAL_HTTP_TIMEOUT", NETWORK_TIMEOUTS["GDAL_HTTP_TIMEOUT"])
        return SourceUnavailableError(
            f"{path}: a network source failed to deliver the {where} ({text}); check the server "
            f"(a read waits at most GDAL_HTTP_TIMEOUT = {timeout} s)"
        )
    why = (
        "a file it reads from cannot be opened"
        if type(cause).__name__ == "CPLE_OpenFailedError"
        else "the file is damaged or incomplete"
    )
    return UnreadableInputError(f"{path}: cannot read the {where}: {text} ({why})")


def iter_windows(width: int, height: int, size: int) -> Iterator[Window]:
    """Row-major square windows of at most ``size`` pixels covering the raster."""
    for r in range(0, height, size):
        for c in range(0, width, size):
            yield Window(c, r, min(size, width - c), min(size, height - r))


def open_georeferenced(path: Path, what: str = "raster") -> rasterio.io.DatasetReader:
    """Open ``path`` for reading; an InputError naming the file if it is not a readable raster
    or is not placed on the map (no CRS, or no geotransform)."""
    try:
        with warnings.catch_warnings():
            # rasterio only warns about a missing geotransform; it is one clear error below.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioIOError as e:
        raise InputError(f"{path}: not a readable raster ({str(e).splitlines()[0]})") from None
    if ds.crs is None or ds.transform.is_identity:
        ds.close()
        if ds.crs is None:
            raise InputError(f"{path}: {what} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:XXXX)")
        raise InputError(
            f"{path}: {what} has no geotransform (its pixels are not placed on the map); "
            "georeference it first (e.g. gdal_edit.py -a_ullr)"
        )
    return ds


class RasterStack:
    """One multi-band file, or several single-band files stacked in order, as one image.

    Use as a context manager::

        with RasterStack.open(["b1.tif", "b2.tif"]) as stack:
            block = stack.read(Window(0, 0, 256, 256), halo=4)   # (2, 264, 264) float32, NaN = no data

    Parameters
    ----------
    paths : one multi-band file or several single-band files (same grid and CRS).
    band_names : optional names, one per selected band.
    bands : optional selection, 1-based indices or band names, applied after stacking.
    nodata : optional override of every band's nodata value.
    """

    def __init__(
        self,
        datasets: list,
        band_index: list[tuple[int, int]],
        band_names: list[str],
        nodata: list[float | None],
        grid: Grid,
        paths: list[Path],
        stack: ExitStack,
        alpha: dict[int, int] | None = None,
    ):
        self._datasets = datasets
        self._band_index = band_index  # (dataset idx, 1-based band) per output band
        self._alpha = alpha or {}  # dataset idx -> band of its coverage mask (datasets warped onto the grid)
        self.open_args: dict | None = None  # set by open(): RasterStack.open(**open_args) reopens it
        # set by open(): the grid and how the files were put on it (see _alignment_record)
        self.alignment: dict[str, Any] = {}
        self.band_names = band_names
        self.nodata = nodata
        self.grid = grid
        self.paths = paths
        self._stack = stack
        self.dtypes = [datasets[d].dtypes[b - 1] for d, b in band_index]
        # One read per file and dtype: (dataset, output positions, 1-based band indexes).
        groups: dict[tuple[int, str], tuple[list[int], list[int]]] = {}
        for i, (d, b) in enumerate(band_index):
            pos, idx = groups.setdefault((d, self.dtypes[i]), ([], []))
            pos.append(i)
            idx.append(b)
        self._reads = [(d, pos, idx) for (d, _), (pos, idx) in groups.items()]

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        paths: Sequence[str | Path] | str | Path,
        band_names: list[str] | None = None,
        bands: Sequence[int | str] | None = None,
        nodata: float | None = None,
        dates: list[str] | None = None,
        align_to: str | Path | None = None,
        warn: bool = True,
        key: str = "rasters.align_to",
    ) -> RasterStack:
        """Open the files as one image (see the class docstring).

        ``dates`` (one label per file) stacks multi-band files of one place date after date:
        ``band_names`` and ``bands`` then describe one file, and the stack's band names are
        ``"<date>:<band>"``.

        Files on different grids are put on one grid, window by window (nearest neighbour), with
        one :class:`RasterAlignmentWarning`: ``align_to``'s (a raster path) when given, else the
        first date's with ``dates``, else the finest file's (the smallest pixels; the first of
        them on a tie), as SNAP and SCP resample the 20 and 60 m bands of Sentinel-2 onto its
        10 m grid. Files of one image in different CRSs need ``align_to``. :attr:`alignment`
        says what was done (``key`` names the setting in error messages).
        """
        files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        ensure_network_timeouts()
        if dates is not None and len(dates) != len(files):
            raise InputError(f"rasters.dates: {len(dates)} dates given for {len(files)} files")
        stack = ExitStack()
        try:
            datasets = _open_files(files, stack)
            _check_band_counts(files, datasets, dates)
            grid, ref, rule = _reference_grid(files, datasets, align_to, dates is not None, key)
            alpha = _put_on_grid(files, datasets, grid, stack)
            index, names = _select_bands(files, datasets, alpha, band_names, bands, dates)
            # A warped file keeps its source's nodata value (nearest neighbour copies values unchanged).
            src_nodata = [
                ds.nodatavals if d not in alpha else ds.src_dataset.nodatavals for d, ds in enumerate(datasets)
            ]
            nod = [nodata if nodata is not None else src_nodata[d][b - 1] for d, b in index]
            if len(set(names)) != len(names):
                raise InputError(f"rasters.band_names: band names must be unique, got {names}")
            out = cls(datasets, index, names, nod, grid, files, stack, alpha)
            out.alignment = _alignment_record(files, datasets, grid, ref, rule, alpha)
            # How to open the same stack elsewhere (a Dask worker reads its own windows).
            out.open_args = {
                "paths": [str(p) for p in files],
                "band_names": band_names,
                "bands": list(bands) if bands is not None else None,
                "nodata": nodata,
                "dates": list(dates) if dates is not None else None,
                "align_to": str(align_to) if align_to is not None else None,
            }
            if alpha and warn:
                warnings.warn(alignment_message(out.alignment), RasterAlignmentWarning, stacklevel=2)
            return out
        except BaseException:
            stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> RasterStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def without(self, names: list[str]) -> RasterStack:
        """This image without the bands ``names`` (a new stack over the same open files; this one
        hands them over and must not be used afterwards)."""
        keep = [i for i, n in enumerate(self.band_names) if n not in set(names)]
        new = RasterStack(
            self._datasets,
            [self._band_index[i] for i in keep],
            [self.band_names[i] for i in keep],
            [self.nodata[i] for i in keep],
            self.grid,
            self.paths,
            self._stack,
            self._alpha,
        )
        new.alignment = self.alignment
        if self.open_args is not None and not self.open_args.get("dates"):
            new.open_args = {**self.open_args, "bands": list(new.band_names)}
        self._stack = ExitStack()
        return new

    # -- reading ------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self._band_index)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.count, self.grid.height, self.grid.width

    def read(self, window: Window, halo: int = 0) -> np.ndarray:
        """Read ``window`` grown by ``halo`` pixels on each side.

        Returns float32 ``(bands, h + 2*halo, w + 2*halo)`` with NaN where the pixel is
        nodata, not finite, or outside the raster.
        """
        col_off, row_off = int(window.col_off) - halo, int(window.row_off) - halo
        h, w = int(window.height) + 2 * halo, int(window.width) + 2 * halo
        out = np.full((self.count, h, w), np.nan, dtype=np.float32)
        # Intersect with the raster so that GDAL never invents values outside it.
        r0, c0 = max(row_off, 0), max(col_off, 0)
        r1, c1 = min(row_off + h, self.grid.height), min(col_off + w, self.grid.width)
        if r1 <= r0 or c1 <= c0:
            return out
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        rows, cols = slice(r0 - row_off, r1 - row_off), slice(c0 - col_off, c1 - col_off)
        for d, positions, indexes in self._reads:
            # All bands of a file in one call: a pixel-interleaved file stores every band of a
            # pixel in the same compressed tile, and band-by-band reads decode each tile once
            # per band (quadratic in the band count for hyperspectral files).
            try:
                raw = self._datasets[d].read(indexes, window=inner)
                # A warped file has no data where it does not cover the grid (its alpha band is 0).
                uncovered = self._datasets[d].read(self._alpha[d], window=inner) == 0 if d in self._alpha else None
            except RasterioIOError as e:
                raise read_failure(self.paths[d], inner, e, _source_files(self._datasets[d])) from None
            for j, i in enumerate(positions):
                vals = raw[j].astype(np.float32, copy=False)
                bad = ~np.isfinite(vals)
                nd = self.nodata[i]
                if nd is not None and not np.isnan(nd):
                    bad |= _equals_nodata(raw[j], nd)
                if uncovered is not None:
                    bad |= uncovered
                out[i, rows, cols] = vals
                out[i, rows, cols][bad] = np.nan
        return out

    def window_footprint_bytes(self, window_size: int, halo: int = 0) -> int:
        """Bytes of the decoded tiles that one read of ``window_size`` (plus ``halo``) touches,
        over every band of every file (a pixel-interleaved tile holds all bands of its file).

        GDAL caches decoded tiles; a cache of this size lets one window's read decode each
        tile once, and the next window along the row reuse the tiles it shares.
        """
        span = int(window_size) + 2 * int(halo)
        total = 0
        for ds in self._datasets:
            bh, bw = ds.block_shapes[0]
            ny = min(-(-span // bh) + 1, -(-ds.height // bh))  # +1: windows need not align with tiles
            nx = min(-(-span // bw) + 1, -(-ds.width // bw))
            total += ny * nx * bh * bw * sum(np.dtype(t).itemsize for t in ds.dtypes)
        return int(total)

    def valid_mask(self, window: Window) -> np.ndarray:
        """(h, w) bool: True where every band has data."""
        return np.all(np.isfinite(self.read(window)), axis=0)

    def windows(self, size: int) -> Iterator[Window]:
        return iter_windows(self.grid.width, self.grid.height, size)


def _source_files(ds: rasterio.io.DatasetReaderBase) -> list[str]:
    """The files GDAL reads for ``ds`` (a VRT's sources; a warped file's source), [] if unknown."""
    try:
        return list(getattr(ds, "src_dataset", ds).files)
    except (RasterioIOError, AttributeError):
        return []


# ----------------------------------------------------------------------------- RasterStack.open, step by step
def _open_files(files: list[Path], stack: ExitStack) -> list:
    """Every file opened (closed with ``stack``); an InputError for a missing, unreadable,
    unreferenced, rotated or sheared one."""
    datasets = []
    for p in files:
        if not p.exists():
            raise InputError(f"{p}: raster file not found")
        datasets.append(stack.enter_context(open_georeferenced(p)))
    for p, ds in zip(files, datasets):
        if not ds.transform.is_rectilinear or ds.transform.b != 0 or ds.transform.d != 0:
            raise InputError(f"{p}: rotated or sheared rasters are not supported; warp it north-up first")
    return datasets


def _grid_of(ds: Any) -> Grid:
    return Grid(ds.crs, ds.transform, ds.width, ds.height)


def _same_grid(ds: Any, grid: Grid) -> bool:
    return (
        ds.crs == grid.crs
        and (ds.width, ds.height) == (grid.width, grid.height)
        and ds.transform.almost_equals(grid.transform)
    )


def _reference_grid(
    files: list[Path], datasets: list, align_to: str | Path | None, dates: bool, key: str
) -> tuple[Grid, str, str]:
    """The stack's grid, the file it comes from and the rule that chose it: ``"align_to"``
    (``align_to``'s grid), ``"first"`` (the first file's: all files share it, or dates),
    ``"finest"`` (the file with the smallest pixels, the first of them on a tie)."""
    if align_to is not None:
        ap = Path(align_to)
        if not ap.exists():
            raise InputError(f"{key}: {ap}: raster file not found")
        with open_georeferenced(ap) as ref:
            return _grid_of(ref), str(ap), "align_to"
    first = _grid_of(datasets[0])
    if dates or all(_same_grid(ds, first) for ds in datasets):
        return first, str(files[0]), "first"
    for p, ds in zip(files, datasets):
        if ds.crs != first.crs:
            raise InputError(
                f"{p}: CRS {ds.crs.to_string()} differs from {files[0]} ({first.crs.to_string()}); reproject "
                f"the bands into one CRS, or name the grid to warp them onto with {key}"
            )
    areas = [abs(ds.transform.a * ds.transform.e) for ds in datasets]
    i = min(range(len(datasets)), key=lambda j: (areas[j], j))
    return _grid_of(datasets[i]), str(files[i]), "finest"


def _check_band_counts(files: list[Path], datasets: list, dates: list[str] | None) -> None:
    """Several files are single-band files (one band each), or with ``dates`` files of the same bands."""
    if dates is None and len(datasets) > 1:
        for p, ds in zip(files, datasets):
            if ds.count != 1:
                raise InputError(
                    f"{p}: has {ds.count} bands; a list of rasters must be single-band files "
                    "(or, for one multi-band file per date, give rasters.dates)"
                )
    if dates is not None:
        for p, ds in zip(files[1:], datasets[1:]):
            if ds.count != datasets[0].count:
                raise InputError(
                    f"{p}: has {ds.count} bands, {files[0]} has {datasets[0].count}; "
                    "every date must have the same bands"
                )


def _put_on_grid(files: list[Path], datasets: list, grid: Grid, stack: ExitStack) -> dict[int, int]:
    """Replace each dataset not on ``grid`` by a nearest-neighbour WarpedVRT onto it (read window
    by window). Returns, per warped dataset (by position), the band of its alpha (coverage) mask."""
    alpha: dict[int, int] = {}
    for d, ds in enumerate(datasets):
        if _same_grid(ds, grid):
            continue
        vrt = stack.enter_context(
            WarpedVRT(
                ds,
                crs=grid.crs,
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                resampling=Resampling.nearest,
                add_alpha=True,
            )
        )
        datasets[d] = vrt
        alpha[d] = vrt.count  # GDAL puts the alpha (coverage) band last
    return alpha


def _alignment_record(
    files: list[Path], datasets: list, grid: Grid, ref: str, rule: str, alpha: dict[int, int]
) -> dict[str, Any]:
    """How the stack's files were put on one grid (saved with a model, so that ``landcover map``
    aligns new files the same way): the rule (see :func:`_reference_grid`), the reference file
    (and its position among the files, when it is one of them), the grid's CRS, pixel size and
    size, the resampling, each warped file with its own pixel size, and the files in order
    (mapping finds them again by name, in whatever order they come)."""
    names = [str(p) for p in files]
    return {
        "files": names,
        "rule": rule,
        "reference": ref,
        "reference_index": names.index(ref) if ref in names else None,
        "crs": grid.crs.to_string(),
        "res": [float(grid.res[0]), float(grid.res[1])],
        "size": [grid.width, grid.height],
        "resampling": "nearest",
        "warped": {
            names[d]: [float(abs(ds.src_dataset.transform.a)), float(abs(ds.src_dataset.transform.e))]
            for d, ds in enumerate(datasets)
            if d in alpha
        },
    }


def alignment_message(alignment: dict[str, Any]) -> str:
    """One line for the files a stack warped onto its grid (their names shortened past a few)."""
    warped = alignment.get("warped") or {}
    res = alignment.get("res") or [0.0, 0.0]
    why = {"finest": "the finest band's grid", "first": "its grid", "align_to": "its grid"}.get(
        str(alignment.get("rule")), "its grid"
    )
    files = short_list(f"{Path(p).name} ({r[0]:g} x {r[1]:g})" for p, r in warped.items())
    return (
        f"{len(warped)} file(s) not on the grid of {alignment.get('reference')}: warped onto {why} "
        f"({alignment.get('crs')}, {res[0]:g} x {res[1]:g}, {alignment['size'][0]} x {alignment['size'][1]} px, "
        f"nearest neighbour) window by window: {files}"
    )


def _select_bands(
    files: list[Path],
    datasets: list,
    alpha: dict[int, int],
    band_names: Sequence[str] | None,
    bands: Sequence[int | str] | None,
    dates: Sequence[str] | None,
) -> tuple[list[tuple[int, int]], list[str]]:
    """The stack's bands: (dataset position, 1-based band) and name of each, after ``band_names``
    and the ``bands`` selection; with ``dates``, those bands of every date, date after date."""
    if dates is None:
        index = [(d, b) for d, ds in enumerate(datasets) for b in range(1, ds.count - (1 if d in alpha else 0) + 1)]
        names = _default_names(files, datasets)[: len(index)]  # a warped file's alpha band has no name
        what = ", ".join(map(str, files))
    else:
        index = [(0, b) for b in range(1, datasets[0].count - (1 if 0 in alpha else 0) + 1)]
        names = _default_names(files[:1], datasets[:1])[: len(index)]
        what = f"each file ({files[0]}, ...)"
    if band_names is not None:
        if len(band_names) != len(index):
            raise InputError(f"rasters.band_names: {len(band_names)} names given for {len(index)} bands in {what}")
        names = list(band_names)
    if bands is not None:
        sel = [_band_position(b, names, len(index)) for b in bands]
        index = [index[i] for i in sel]
        names = [names[i] for i in sel]
    if dates is not None:
        index = [(d, b) for d in range(len(datasets)) for _, b in index]
        names = [f"{date}:{n}" for date in dates for n in names]
    return index, names


def _band_position(band: int | str, names: list[str], n: int) -> int:
    """0-based position of a ``rasters.bands`` entry: a 1-based index (of ``n`` bands) or a band name."""
    if isinstance(band, int):
        if not 1 <= band <= n:
            raise InputError(f"rasters.bands: band {band} out of range 1..{n}")
        return band - 1
    if band not in names:
        raise InputError(f"rasters.bands: no band named {band!r} (bands: {', '.join(names)})")
    return names.index(band)


def _default_names(paths: list[Path], datasets: list) -> list[str]:
    """Band names when none are given: file stems for several files, else the file's band
    descriptions when they are all set and unique, else ``band_1, band_2, ...``."""
    if len(datasets) > 1:
        return [p.stem for p in paths]
    ds = datasets[0]
    desc = list(ds.descriptions)
    if all(desc) and len(set(desc)) == len(desc):
        return [str(d) for d in desc]
    return [f"band_{i}" for i in range(1, ds.count + 1)]
