"""Accuracy and area estimates from an analyst's own reference sample.

Three entry points, each a plain function and a ``landcover`` subcommand
(:func:`register` adds them to the CLI):

``landcover assess-design MAP.tif --n N --out SAMPLE.gpkg``
    :func:`design_sample` draws a stratified random sample of pixel centres,
    the map classes being the strata, for labelling.
``landcover assess MAP.tif SAMPLE.gpkg --field FIELD --json OUT.json``
    :func:`assess_sample` compares the labels with the map and applies the
    stratified estimators of Olofsson et al. (2014).
``landcover assess --error-matrix COUNTS.csv --areas AREAS.csv --json OUT.json``
    :func:`assess_error_matrix` applies the same estimators to a matrix of
    sample counts and the mapped area of each class.

Sample allocation (``--allocation``)
------------------------------------
``proportional``
    ``n_i`` proportional to the mapped area of class i (largest-remainder
    rounding). Rare classes may get very few points.
``equal``
    The same number of points in every class.
``olofsson`` (default)
    Olofsson et al. (2014, section 4.1.3): every class gets at least
    ``--min-per-class`` points (50 by default), the remaining points are
    allocated in proportion to area among the other classes (repeated until no
    class falls under the minimum). This keeps rare classes' user's accuracy
    estimable while staying close to proportional for the area estimates.

With every allocation a class never gets more points than it has pixels (it
is then a census) and every mapped class needs at least 2 points, so that its
variance can be estimated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import InputError
from pipeline.evaluation.area_estimates import area_adjusted, area_adjusted_from_labels
from pipeline.evaluation.areas import class_pixels_and_areas

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

ALLOCATIONS = ("proportional", "equal", "olofsson")


# ---------------------------------------------------------------------------- helpers
def parse_class_names(spec: str | None) -> dict[int, str]:
    """Parse ``"1=water,2=forest"`` into ``{1: "water", 2: "forest"}``."""
    if not spec:
        return {}
    out: dict[int, str] = {}
    for part in spec.split(","):
        if "=" not in part:
            raise InputError(f"--class-names: {part!r} is not of the form ID=NAME")
        k, v = part.split("=", 1)
        try:
            out[int(k.strip())] = v.strip()
        except ValueError:
            raise InputError(f"--class-names: {k.strip()!r} is not an integer class id") from None
    return out


def map_class_names(map_path: str | Path, override: Mapping[int, str] | None = None) -> dict[int, str]:
    """Class id -> name for a class map, read from the map itself.

    Looked up, first hit wins per id: ``override``; the map's ``class_names`` (or
    ``classes``) tag holding ``{id: name}``, ``[{"id", "name"}]`` or a list of names;
    its raster attribute table or category names (``<map>.tif.aux.xml``, as
    :func:`pipeline.mapping.class_maps.write_class_map` writes them); the ``classes`` list of a
    ``metrics.json`` in the run directory holding the map (``<run>/maps/x.tif``).
    Ids with no name found are absent (callers fall back to ``str(id)``).
    """
    from pipeline.inputs.class_table import names_from_json, read_pam_names, read_tag_names

    path = Path(map_path)
    found: list[dict[int, str]] = [read_tag_names(path), read_pam_names(path)]
    for metrics in (path.parent.parent / "metrics.json", path.parent / "metrics.json"):
        if metrics.is_file():
            try:
                found.append(names_from_json(json.loads(metrics.read_text()).get("classes")))
            except (json.JSONDecodeError, AttributeError):
                pass
            break
    names: dict[int, str] = {}
    for cand in reversed(found):  # earlier sources override later ones
        names.update(cand)
    names.update(override or {})
    return names


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` that add up to ``total``."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(weights.size, dtype=np.int64)
    raw = weights / weights.sum() * total
    base = np.floor(raw).astype(np.int64)
    rest = total - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return base


def allocate(
    pixel_counts: Mapping[int, int], n: int, allocation: str = "olofsson", min_per_class: int = 50
) -> dict[int, int]:
    """Points per map class for a stratified random sample.

    Parameters
    ----------
    pixel_counts : mapping class id -> pixels in the map
    n : int
        Total sample size requested.
    allocation : {"proportional", "equal", "olofsson"}
        See the module docstring.
    min_per_class : int
        Floor per class for ``"olofsson"``.

    Returns
    -------
    dict class id -> int
        Points per class; never more than the class's pixels, so the total can
        be below ``n`` when classes are tiny.

    Raises
    ------
    InputError
        ``n`` too small (fewer than 2 per mapped class, or than
        ``min_per_class`` per class for ``"olofsson"``), unknown allocation.
    """
    ids = [c for c, k in sorted(pixel_counts.items()) if k > 0]
    if not ids:
        raise InputError("the map has no classified pixels to sample")
    if allocation not in ALLOCATIONS:
        raise InputError(f"--allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    caps = np.array([pixel_counts[c] for c in ids], dtype=np.int64)
    q = len(ids)
    if n < 2 * q:
        raise InputError(f"--n {n} is too small: {q} mapped classes need at least 2 points each ({2 * q})")
    w = caps.astype(np.float64)
    if allocation == "proportional":
        alloc = _largest_remainder(w, n)
    elif allocation == "equal":
        alloc = _largest_remainder(np.ones(q), n)
    else:
        floor = np.minimum(min_per_class, caps)
        if n < floor.sum():
            raise InputError(
                f"--n {n} is too small for --min-per-class {min_per_class} over {q} classes "
                f"(needs {int(floor.sum())}); raise --n or lower --min-per-class"
            )
        fixed = np.zeros(q, dtype=bool)
        while True:
            alloc = np.where(fixed, floor, 0)
            alloc[~fixed] = _largest_remainder(w[~fixed], n - int(floor[fixed].sum()))
            newly = ~fixed & (alloc < floor)
            if not newly.any():
                break
            fixed |= newly
    return {c: int(k) for c, k in zip(ids, np.minimum(alloc, caps))}


# ---------------------------------------------------------------------------- design
def design_sample(
    map_path: str | Path,
    n: int,
    allocation: str = "olofsson",
    min_per_class: int = 50,
    seed: int = 0,
    class_names: Mapping[int, str] | None = None,
    nodata: int = 255,
) -> gpd.GeoDataFrame:
    """Stratified random sample of pixel centres of a class map.

    Two windowed passes: one counts pixels per class, the other picks the
    pixels whose rank within their class was drawn (without replacement), so
    memory stays at one window whatever the map size.

    Parameters
    ----------
    map_path : path
        Class map (projected CRS in metres).
    n : int
        Requested sample size (see :func:`allocate`).
    allocation, min_per_class : see :func:`allocate`
    seed : int
    class_names : mapping id -> name, optional
        Overrides the names found by :func:`map_class_names`.
    nodata : int

    Returns
    -------
    geopandas.GeoDataFrame
        One point per sampled pixel centre, in the map's CRS, with columns
        ``map_class`` (int), ``map_class_name`` (str), ``reference`` (empty
        string, for the analyst), ``row``, ``col``, and geometry.
    """
    import geopandas as gpd
    import rasterio
    from rasterio.transform import xy

    counts, _ = class_pixels_and_areas(map_path, nodata)  # any CRS whose pixel areas can be measured
    alloc = allocate(counts, n, allocation, min_per_class)
    names = map_class_names(map_path, class_names)
    rng = np.random.default_rng(seed)
    ranks = {c: np.sort(rng.choice(counts[c], size=k, replace=False)) for c, k in alloc.items() if k > 0}
    seen = {c: 0 for c in ranks}
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    with rasterio.open(map_path) as src:
        transform, crs = src.transform, src.crs
        for _, win in src.block_windows(1):
            data = src.read(1, window=win)
            for c, r in ranks.items():
                flat = np.flatnonzero(data.ravel() == c)
                lo, hi = np.searchsorted(r, [seen[c], seen[c] + flat.size])
                if hi > lo:
                    pos = flat[r[lo:hi] - seen[c]]
                    rows.append(pos // data.shape[1] + win.row_off)
                    cols.append(pos % data.shape[1] + win.col_off)
                    classes.append(np.full(hi - lo, c))
                seen[c] += flat.size
    rr = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cc = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    kk = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    order = np.lexsort((cc, rr, kk))
    rr, cc, kk = rr[order], cc[order], kk[order]
    xs, ys = xy(transform, rr, cc, offset="center")
    return gpd.GeoDataFrame(
        {
            "map_class": kk.astype(np.int64),
            "map_class_name": [names.get(int(c), str(int(c))) for c in kk],
            "reference": [""] * kk.size,
            "row": rr.astype(np.int64),
            "col": cc.astype(np.int64),
        },
        geometry=gpd.points_from_xy(np.asarray(xs, float), np.asarray(ys, float)),
        crs=crs,
    )


def write_sample(gdf: gpd.GeoDataFrame, out: str | Path) -> Path:
    """Write a sample GeoDataFrame to a GeoPackage via a temporary name."""
    out = Path(out)
    with atomic_path(out) as tmp:
        gdf.to_file(tmp, driver="GPKG", layer=out.stem)
    return out


# ---------------------------------------------------------------------------- assess
def _read_sample(sample_path: Path, layer: str | None) -> gpd.GeoDataFrame:
    import geopandas as gpd

    if not sample_path.exists():
        raise InputError(f"{sample_path}: sample file not found")
    try:
        return gpd.read_file(sample_path, layer=layer) if layer else gpd.read_file(sample_path)
    except Exception as e:  # pyogrio raises several types
        raise InputError(f"{sample_path}: cannot read the sample ({e})") from None


def _to_class_id(value: Any, by_name: Mapping[str, int], ids: set[int], where: str) -> int:
    """:func:`pipeline.inputs.label_source.to_class_id` (the same case rule as training labels), or an InputError."""
    from pipeline.inputs.label_source import to_class_id

    cid = to_class_id(value, {k.lower(): v for k, v in by_name.items()}, ids)
    if cid is None:
        raise InputError(f"{where}: unknown class {str(value).strip()!r}; known classes: {', '.join(sorted(by_name))}")
    return cid


def assess_sample(
    map_path: str | Path,
    sample_path: str | Path,
    field: str,
    layer: str | None = None,
    class_names: Mapping[int, str] | None = None,
    nodata: int = 255,
) -> dict:
    """Olofsson et al. (2014) estimates from a labelled point sample and its map.

    Parameters
    ----------
    map_path : path
        The class map the sample was drawn from (its classes are the strata).
    sample_path : path
        Vector file of points (any CRS; reprojected to the map's).
    field : str
        Column with the reference label: class names (case-insensitive) or ids.
    layer : str, optional
    class_names : mapping id -> name, optional

    Returns
    -------
    dict
        :func:`pipeline.evaluation.area_estimates.area_adjusted_from_labels` output plus
        ``"map"``, ``"sample"``, ``"field"``, ``"n_points_used"``.

    Raises
    ------
    InputError
        Missing files, missing field, empty or unknown labels, no CRS.
    """
    import rasterio

    map_path, sample_path = Path(map_path), Path(sample_path)
    counts, area_ha = class_pixels_and_areas(map_path, nodata)  # checks the map first; true areas in degrees too
    pix_ha = sum(area_ha.values()) / max(sum(counts.values()), 1)
    gdf = _read_sample(sample_path, layer)
    if field not in gdf.columns:
        fields = [c for c in gdf.columns if c != "geometry"]
        raise InputError(f"{sample_path}: no field {field!r}; fields are {', '.join(fields)}")
    if gdf.crs is None:
        raise InputError(f"{sample_path}: the sample has no CRS; set one so it can be matched to the map")
    names = map_class_names(map_path, None)
    if {"map_class", "map_class_name"} <= set(gdf.columns):
        for c, nme in zip(gdf["map_class"], gdf["map_class_name"]):
            if c is not None and nme is not None and str(nme) != "":
                names.setdefault(int(c), str(nme))
    names.update(class_names or {})
    ids = set(counts) | set(names)
    by_name = {names.get(c, str(c)): c for c in ids}
    labels = gdf[field]
    empty = labels.isna() | (labels.astype(str).str.strip() == "")
    if empty.any():
        raise InputError(f"{sample_path}: {int(empty.sum())} of {len(gdf)} points have no label in field {field!r}")
    y_ref = np.array([_to_class_id(v, by_name, ids, f"{sample_path} field {field!r}") for v in labels])
    notes: list[str] = []
    with rasterio.open(map_path) as src:
        pts = gdf.to_crs(src.crs) if gdf.crs != src.crs else gdf
        if not all(pts.geometry.geom_type == "Point"):
            raise InputError(f"{sample_path}: the sample must hold points")
        xs, ys = pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy()
        r, c = rasterio.transform.rowcol(src.transform, xs, ys)
        r, c = np.asarray(r), np.asarray(c)
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        y_map = np.full(len(gdf), -1, dtype=np.int64)
        if inside.any():
            vals = np.array([v[0] for v in src.sample(zip(xs[inside], ys[inside]), indexes=1)])
            y_map[inside] = vals
    if (~inside).any():
        notes.append(f"{int((~inside).sum())} points fall outside the map and were left out")
    valid = inside & np.isin(y_map, list(counts))
    dropped = int((inside & ~valid).sum())
    if dropped:
        notes.append(f"{dropped} points fall on nodata (or unmapped) pixels and were left out")
    if not valid.any():
        raise InputError(f"{sample_path}: no point falls on a classified pixel of {map_path}")
    class_ids = sorted(set(counts) | set(y_ref[valid].tolist()))
    result = area_adjusted_from_labels(
        y_ref[valid],
        y_map[valid],
        counts,
        pix_ha,
        class_ids,
        [names.get(k, str(k)) for k in class_ids],
        map_area_ha=area_ha,
    )
    result["notes"] = notes + result["notes"]
    result.update(map=str(map_path), sample=str(sample_path), field=field, n_points_used=int(valid.sum()))
    return result


def _read_csv(path: Path, **kw: Any) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        return pd.read_csv(path, **kw)
    except Exception as e:
        raise InputError(f"{path}: cannot read the CSV ({e})") from None


def assess_error_matrix(counts_csv: str | Path, areas_csv: str | Path) -> dict:
    """Olofsson et al. (2014) estimates from a matrix of sample counts and mapped areas.

    Parameters
    ----------
    counts_csv : path
        First column: map class names (rows, the strata); header row:
        reference class names; cells: sample counts.
    areas_csv : path
        Columns ``class,area_ha``: mapped area of each class in hectares.

    Returns
    -------
    dict
        :func:`pipeline.evaluation.area_estimates.area_adjusted` output plus ``"error_matrix"``
        and ``"areas"`` (the input paths).

    Raises
    ------
    InputError
        Missing files, non-numeric or negative counts, row and header names
        differing, class names differing between the two files.
    """
    counts_csv, areas_csv = Path(counts_csv), Path(areas_csv)
    m = _read_csv(counts_csv, index_col=0)
    rows = [str(x).strip() for x in m.index]
    cols = [str(x).strip() for x in m.columns]
    m.index, m.columns = rows, cols
    if len(set(rows)) != len(rows) or len(set(cols)) != len(cols):
        raise InputError(f"{counts_csv}: class names repeat in the first column or the header")
    if set(rows) != set(cols):
        raise InputError(
            f"{counts_csv}: map classes (first column) {sorted(set(rows) - set(cols))} and reference "
            f"classes (header) {sorted(set(cols) - set(rows))} differ; both must list the same classes"
        )
    m = m[rows]
    try:
        counts = m.to_numpy(dtype=np.float64)
    except ValueError:
        raise InputError(f"{counts_csv}: the counts must be numbers") from None
    if not np.isfinite(counts).all() or (counts < 0).any() or (counts != np.round(counts)).any():
        raise InputError(f"{counts_csv}: the counts must be non-negative whole numbers")
    a = _read_csv(areas_csv)
    a.columns = [str(c).strip() for c in a.columns]
    missing = {"class", "area_ha"} - set(a.columns)
    if missing:
        raise InputError(f"{areas_csv}: missing column(s) {', '.join(sorted(missing))}; need class,area_ha")
    a_names = [str(x).strip() for x in a["class"]]
    if len(set(a_names)) != len(a_names):
        raise InputError(f"{areas_csv}: a class is listed twice")
    if set(a_names) != set(rows):
        raise InputError(
            f"{areas_csv} and {counts_csv} name different classes: only in {areas_csv.name}: "
            f"{sorted(set(a_names) - set(rows))}, only in {counts_csv.name}: {sorted(set(rows) - set(a_names))}"
        )
    try:
        area_of = dict(zip(a_names, a["area_ha"].astype(float)))
    except ValueError:
        raise InputError(f"{areas_csv}: column area_ha must hold numbers") from None
    areas = np.array([area_of[r] for r in rows])
    if not np.isfinite(areas).all() or (areas < 0).any():
        raise InputError(f"{areas_csv}: area_ha must be non-negative numbers")
    result = area_adjusted(counts, areas, rows)
    result.update(error_matrix=str(counts_csv), areas=str(areas_csv))
    return result
