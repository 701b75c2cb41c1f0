"""Point tables: a CSV or Parquet file of labelled points, one row per point.

The coordinates come from columns (:mod:`pipeline.inputs.coordinates`: ``longitude``/``latitude``,
``lon``/``lat``, ``x``/``y``, ``easting``/``northing`` or ``labels.x``/``labels.y``, in
``labels.crs``, EPSG:4326 for longitude/latitude by default); a GeoParquet file brings its own
geometry. From there the points are vector labels like any other
(:class:`~pipeline.inputs.vector_labels.VectorLabels`): matched to the class table,
rasterised onto the image grid (the pixel containing each point), and accounted for per class.
"""

from __future__ import annotations

import csv
from pathlib import Path

import geopandas as gpd
import pandas as pd
from rasterio.crs import CRS

from pipeline.core.errors import InputError
from pipeline.inputs.label_source import LabelReport
from pipeline.inputs.settings import ClassSpec, LabelConfig
from pipeline.inputs.vector_labels import VectorLabels, label_features, library_warnings_to_log

__all__ = ["PointTableLabels", "read_point_table", "read_table"]

PARQUET_SUFFIXES = {".parquet", ".pq", ".geoparquet"}


def _separator(path: Path) -> str:
    """The delimiter of a delimited text file, sniffed from its first lines (``,``, ``;``, tab, ``|``)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        head = f.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:  # a single column, or too few lines to tell
        return ","


def read_table(path: Path) -> pd.DataFrame:
    """The rows of a CSV/TSV or Parquet file: a GeoDataFrame for GeoParquet (its own geometry),
    else a DataFrame; an InputError naming the file when it cannot be read."""
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            meta = pq.read_schema(path).metadata or {}
            return gpd.read_parquet(path) if b"geo" in meta else pd.read_parquet(path)
        return pd.read_csv(path, sep=_separator(path), encoding="utf-8-sig")
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: cannot read the table of labels ({first})") from None
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own types for a damaged file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: cannot read the table of labels ({first})") from None


def read_point_table(
    cfg: LabelConfig, path: Path, classes: list[ClassSpec], crs: CRS, on_unknown: str = "error"
) -> tuple[gpd.GeoDataFrame, LabelReport]:
    """The labelled points of a table in ``crs`` (``class_id``, ``group`` = 0-based row,
    ``geometry``) and the report (see :func:`~pipeline.inputs.vector_labels.label_features`)."""
    if not path.exists():
        raise InputError(f"{path}: label file not found")
    with library_warnings_to_log(path):
        table = read_table(path)
    return label_features(table, cfg, path, classes, crs, on_unknown, kind="table")


class PointTableLabels(VectorLabels):
    """Points of a CSV or Parquet table, rasterised like any vector labels (a
    :class:`~pipeline.inputs.label_source.LabelSource`)."""

    read = staticmethod(read_point_table)
