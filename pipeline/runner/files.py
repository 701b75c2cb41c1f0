"""The run directory's records and tables, read and written by the stages.

JSON records are read back with :func:`read_json`; tables are written atomically (a hidden
temporary sibling renamed into place, :mod:`pipeline.core.atomic`) as Parquet, or as
GeoParquet with a point geometry for the samples table.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _parquet_size(df: pd.DataFrame) -> int:
    """Bytes of ``df`` as Parquet (written to memory: asked only when the disk is full)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.tell()


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path, lambda: _parquet_size(df)) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def write_geoparquet(df: pd.DataFrame, path: Path, crs: Any, scene_crs: dict[str, str] | None = None) -> Path:
    """``df`` as GeoParquet: its columns plus a point ``geometry`` from ``x``/``y`` in ``crs``
    (readable by geopandas with the CRS, and by pandas as a plain table). With scenes in several
    CRSs (``crs`` None, ``scene_crs`` naming each scene's), the geometry is reprojected into the
    first row's scene CRS; ``x``/``y`` stay in each scene's own CRS."""
    import geopandas as gpd

    from pipeline.split.outputs import rows_crs, to_common_crs

    row_crs, target = rows_crs(df, crs, scene_crs)
    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["x"], df["y"]), crs=None if row_crs is not None else crs)
    if row_crs is not None:
        gdf = to_common_crs(gdf, row_crs, target)
    with atomic_path(path, lambda: _parquet_size(gdf)) as tmp:
        gdf.to_parquet(tmp, index=False)
    return path
