"""Settings of the inputs: rasters, labels, scenes and the class table (``rasters:``, ``labels:``,
``scenes:``, ``classes:``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.core.settings import Strict
from pipeline.inputs.class_table import parse_color


class RasterConfig(Strict):
    """The image: one multi-band file, single-band files stacked in order, or (with ``dates``)
    one multi-band file per date of the same place, stacked date after date.

    With ``scenes``, the top-level ``rasters`` holds only settings every scene shares
    (``band_names``, ``bands``, ``nodata``, ...) and each scene names its own ``paths``.
    """

    paths: list[str] | None = Field(default=None, min_length=1)
    band_names: list[str] | None = None  # with dates: the names of one file's bands
    bands: list[int | str] | None = None  # selection: 1-based indices or band names (with dates: of each file)
    nodata: float | None = None  # overrides the files' own nodata value
    drop_empty_bands: bool = False  # bands with no data (or one constant value) everywhere: drop with a warning
    dates: list[str] | None = None  # one label per path (e.g. 2019-06-01); band names become "<date>:<band>"
    align_to: str | None = None  # a raster whose grid every file is warped onto (default: the first file's)

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _dates_match_paths(self) -> RasterConfig:
        if self.dates is not None:
            if self.paths is not None and len(self.dates) != len(self.paths):
                raise ValueError(
                    f"dates: {len(self.dates)} dates given for {len(self.paths)} paths; give one date per file"
                )
            dup = sorted({d for d in self.dates if self.dates.count(d) > 1})
            if dup:
                raise ValueError(f"dates: date {dup[0]!r} appears twice")
            bad = [d for d in self.dates if not d or ":" in d]
            if bad:
                raise ValueError(f"dates: {bad[0]!r} is not a usable date label (non-empty, no ':')")
        return self


#: Suffixes of label rasters (anything else is a vector file or a table of points).
LABEL_RASTER_SUFFIXES = {".tif", ".tiff", ".gtif", ".vrt", ".img", ".jp2"}
#: Suffixes of tables read as points from coordinate columns (GeoParquet: its own geometry).
POINT_TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq", ".geoparquet"}


class LabelConfig(Strict):
    """Training labels: a vector file with a class field, a table of points (CSV, Parquet) with
    coordinate columns and a class field, or a label raster of class ids."""

    path: str | None = None  # required, except at the top level of a config with `scenes`
    field: str | None = None  # class name (or id) column of a vector file or table
    id_field: str | None = None  # optional column of class ids cross-checked against `field`
    layer: str | None = None  # layer of a multi-layer vector file
    # coordinate columns of a table of points (default: longitude/latitude, lon/lat, x/y, easting/northing)
    x: str | None = None
    y: str | None = None
    # CRS of a table's coordinates, or of a vector file that has none (default: EPSG:4326 for
    # longitude/latitude columns, else the image's)
    crs: str | None = None
    on_unknown: Literal["error", "drop"] = "error"  # labels not in the class table: stop, or drop and report
    # a class with no usable labels (all outside the raster or on nodata): leave it out with a warning,
    # or stop the run (`landcover run --strict`)
    on_empty_class: Literal["drop", "error"] = "drop"

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(v)
        except CRSError:
            raise ValueError(f"{v!r} is not a CRS (e.g. EPSG:4326, or a PROJ or WKT string)") from None
        return v

    @model_validator(mode="after")
    def _x_with_y(self) -> LabelConfig:
        if (self.x is None) != (self.y is None):
            raise ValueError("labels.x and labels.y name the coordinate columns together; give both")
        return self

    @property
    def suffix(self) -> str:
        return Path((self.path or "").split(":")[-1]).suffix.lower()

    @property
    def is_raster(self) -> bool:
        return self.suffix in LABEL_RASTER_SUFFIXES

    @property
    def is_table(self) -> bool:
        """A table of points (CSV, Parquet) rather than a vector file or a raster."""
        return self.suffix in POINT_TABLE_SUFFIXES


SCENE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"  # a file-name-safe word: scenes name map folders


class SceneConfig(Strict):
    """One scene (a tile, a date, a place): its rasters and, optionally, its labels.

    A scene without labels is mapped but gives no training or test samples. Every scene
    shares the run's band layout and class table.
    """

    name: str
    rasters: RasterConfig
    labels: LabelConfig | None = None

    @field_validator("name")
    @classmethod
    def _file_safe(cls, v: str) -> str:
        if not re.fullmatch(SCENE_NAME, v):
            raise ValueError(f"scene name {v!r} must be letters, digits, '_', '-' or '.' (it names a map folder)")
        return v

    @model_validator(mode="after")
    def _paths_given(self) -> SceneConfig:
        if self.rasters.paths is None:
            raise ValueError(f"scene {self.name!r}: rasters.paths is required")
        if self.labels is not None and self.labels.path is None:
            raise ValueError(f"scene {self.name!r}: labels.path is required (or leave labels out)")
        return self


class SceneGlobConfig(Strict):
    """Scenes from a file pattern: one raster per scene, the scene named after the file's stem.

    ``labels`` is a path template where ``{name}`` stands for the scene name; scenes whose
    label file does not exist are mapped only. Shared settings come from the top-level
    ``rasters`` and ``labels``.
    """

    rasters: str = Field(min_length=1)  # e.g. images/*.tif (relative to the config file)
    labels: str | None = None  # e.g. labels/{name}.tif


class ClassSpec(Strict):
    id: int = Field(ge=0, le=254)
    name: str = Field(min_length=1)
    color: str = "#808080"

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError(f"class name {v!r} contains control characters")
        return v

    @field_validator("color")
    @classmethod
    def _hex(cls, v: str) -> str:
        parse_color(v)
        return v.lower()

    @property
    def rgb(self) -> tuple[int, int, int]:
        return parse_color(self.color)
