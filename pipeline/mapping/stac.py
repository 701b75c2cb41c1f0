"""STAC metadata of class maps, with pystac and its extensions: one Item per map, gathered in a
Catalog (a run's ``stac/catalog.json``, a ``serve`` outbox's ``catalog.json``).

An Item (:func:`map_item`) describes one class map and what came with it, as assets: the map
(a Cloud-Optimized GeoTIFF), the map after the minimum mapping unit, the confidence raster, the
polygons, the legends and the QGIS styles. It uses the projection extension (``proj:code`` or,
for a CRS without an EPSG code, ``proj:wkt2``; ``proj:shape``, ``proj:transform``,
``proj:bbox``), the raster extension (data type, nodata, unit, resolution of each band), the
file extension (size and SHA-256 multihash of each file) and the classification extension
(each class's value, a machine name, its title and its colour, and the nodata value) on the
class maps and polygons. Links name the report, the metrics and the model that made the map.
Every href is relative, so a run directory or an outbox can be moved or served as it is.

Items are validated against the STAC and extension JSON schemas before they are written, offline:
pystac ships the core schemas, and the extension schemas are vendored in ``stac_schemas/``
(their sources and licence in its README). :func:`validate_item` raises naming any schema that is
missing instead of fetching it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.atomic import as_out_of_space, write_text
from pipeline.core.errors import OutputWriteError
from pipeline.inputs.class_table import NODATA_CLASS, ClassTable

if TYPE_CHECKING:
    import pystac

#: Extension schema URI -> vendored file in ``stac_schemas/``.
EXTENSION_SCHEMAS = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": "projection-v2.0.0.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "raster-v1.1.0.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json": "file-v2.1.0.json",
    "https://stac-extensions.github.io/classification/v2.0.0/schema.json": "classification-v2.0.0.json",
}
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
GPKG = "application/geopackage+sqlite3"
QML = "application/xml"


@dataclass
class MapFiles:
    """The files of one mapped scene (absolute paths; ``None``: not written)."""

    map: Path
    confidence: Path | None = None
    mmu_map: Path | None = None
    mmu: str | None = None  # the minimum mapping unit as given, e.g. "0.5 ha"
    polygons: Path | None = None
    extra: dict[str, tuple[Path, str, list[str], str]] = field(
        default_factory=dict
    )  # key -> (path, type, roles, title)


@dataclass
class MapLinks:
    """What an Item links to besides its catalog (absolute paths; ``None``: none)."""

    report: Path | None = None
    metrics: Path | None = None
    model: Path | None = None


def class_name_slug(name: str) -> str:
    """A class name as the classification extension's ``name`` (letters, digits, ``-`` and ``_``)."""
    return re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_") or "class"


def multihash_sha256(path: Path) -> str:
    """The file's SHA-256 as a multihash in hex (``1220`` + digest), as the file extension wants it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "1220" + h.hexdigest()


def _classes(classes: ClassTable) -> list[Any]:
    from pystac.extensions.classification import Classification

    out = [
        Classification.create(
            value=int(i), name=class_name_slug(n), title=n, description=n, color_hint=c.lstrip("#").upper()
        )
        for i, n, c in zip(classes.ids, classes.names, classes.colors)
    ]
    out.append(Classification.create(value=NODATA_CLASS, name="nodata", title="no data", nodata=True))
    return out


def _add_raster(
    item: pystac.Item,
    key: str,
    path: Path,
    title: str,
    roles: list[str],
    nodata: int,
    unit: str | None,
    res: float,
    classes: ClassTable | None,
) -> None:
    """Add a uint8 COG asset with its raster band, file size and checksum, and classes if given."""
    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension, Sampling

    item.add_asset(key, pystac.Asset(href=str(path), media_type=COG, title=title, roles=roles))
    asset = item.assets[key]
    band = RasterBand.create(data_type=DataType.UINT8, nodata=nodata, sampling=Sampling.AREA, unit=unit)
    if res > 0:
        band.spatial_resolution = res
    RasterExtension.ext(asset, add_if_missing=True).bands = [band]
    _file(asset, path)
    if classes is not None:
        ClassificationExtension.ext(asset, add_if_missing=True).classes = _classes(classes)


def _file(asset: Any, path: Path) -> None:
    from pystac.extensions.file import FileExtension

    fe = FileExtension.ext(asset, add_if_missing=True)
    fe.size = path.stat().st_size
    fe.checksum = multihash_sha256(path)


def map_item(
    item_id: str,
    files: MapFiles,
    classes: ClassTable,
    links: MapLinks | None = None,
    title: str | None = None,
    description: str | None = None,
    properties: dict[str, Any] | None = None,
) -> pystac.Item:
    """The STAC Item of one class map and what came with it (see the module docstring)."""
    import pystac
    import rasterio
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension
    from rasterio.warp import transform_bounds, transform_geom
    from shapely import segmentize
    from shapely.geometry import box, mapping

    with rasterio.open(files.map) as src:
        crs, tr, shape, bounds = src.crs, src.transform, [src.height, src.width], list(src.bounds)
        made = dt.datetime.fromtimestamp(Path(files.map).stat().st_mtime, dt.UTC).replace(microsecond=0)
    # the footprint in WGS 84, its edges densified so that a curved outline stays close
    outline = segmentize(box(*bounds), max((bounds[2] - bounds[0]), (bounds[3] - bounds[1])) / 4)
    geom = transform_geom(crs, "EPSG:4326", mapping(outline)) if crs else mapping(outline)
    bbox = list(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)) if crs else bounds
    res = abs(tr.a) if crs is not None and crs.is_projected and crs.linear_units in ("metre", "meter") else 0.0
    item = pystac.Item(
        id=item_id,
        geometry=geom,
        bbox=bbox,
        datetime=made,
        properties={"title": title or item_id, "created": made.isoformat(), **(properties or {})},
    )
    if description:
        item.common_metadata.description = description
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg() if crs else None
    proj.code = f"EPSG:{epsg}" if epsg else None
    if epsg is None and crs is not None:
        proj.wkt2 = crs.to_wkt(version="WKT2_2019")
    proj.shape, proj.transform, proj.bbox = shape, list(tr)[:6], bounds

    _add_raster(item, "classes", files.map, "class map", ["data"], NODATA_CLASS, None, res, classes)
    if files.mmu_map is not None:
        what = f"class map after the minimum mapping unit ({files.mmu})"
        _add_raster(item, "classes_mmu", files.mmu_map, what, ["data"], NODATA_CLASS, None, res, classes)
    if files.confidence is not None:
        what = "confidence in the mapped class (%)"
        _add_raster(item, "confidence", files.confidence, what, ["data", "uncertainty"], 255, "%", res, None)
    if files.polygons is not None:
        item.add_asset(
            "polygons", pystac.Asset(href=str(files.polygons), media_type=GPKG, title="class polygons", roles=["data"])
        )
        _file(item.assets["polygons"], files.polygons)
        ClassificationExtension.ext(item.assets["polygons"], add_if_missing=True).classes = _classes(classes)[:-1]
    for key, (path, media, roles, what) in files.extra.items():
        if path.is_file():
            item.add_asset(key, pystac.Asset(href=str(path), media_type=media, title=what, roles=roles))
            _file(item.assets[key], path)
    links = links or MapLinks()
    link_types = {".html": "text/html", ".md": "text/markdown", ".json": "application/json"}
    for rel, target, what in (
        ("describedby", links.report, "report"),
        (
            "describedby",
            links.metrics,
            "accuracy metrics" if links.metrics and links.metrics.name == "metrics.json" else "record",
        ),
        ("related", links.model, "the model that made the map"),
    ):
        if target is not None and Path(target).exists():
            kind = link_types.get(Path(target).suffix)
            item.add_link(pystac.Link(rel=rel, target=str(target), media_type=kind, title=what))
    return item


def sidecar_assets(map_path: Path, confidence: Path | None, mmu_map: Path | None) -> dict:
    """The legends and QGIS styles beside a map, as :attr:`MapFiles.extra` entries."""
    from pipeline.mapping.legends import legend_path

    out = {
        "legend": (legend_path(map_path), "image/png", ["legend", "overview"], "legend (class colours and names)"),
        "style": (map_path.with_suffix(".qml"), QML, ["style", "metadata"], "QGIS style of the class map"),
    }
    if confidence is not None:
        out["confidence_legend"] = (legend_path(confidence), "image/png", ["legend"], "confidence colour bar")
        out["confidence_style"] = (
            confidence.with_suffix(".qml"),
            QML,
            ["style", "metadata"],
            "QGIS style of the confidence",
        )
    if mmu_map is not None:
        out["style_mmu"] = (mmu_map.with_suffix(".qml"), QML, ["style", "metadata"], "QGIS style of the MMU map")
    return out


# ----------------------------------------------------------------------------- validation, offline
def schema_cache() -> dict[str, dict]:
    """Vendored extension schemas by URI, plus pystac's own core schemas."""
    from pystac.validation.local_validator import get_local_schema_cache

    folder = resources.files("pipeline.mapping").joinpath("stac_schemas")
    cache = dict(get_local_schema_cache())
    for uri, name in EXTENSION_SCHEMAS.items():
        cache[uri] = json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
    return cache


def offline_validator() -> Any:
    """A pystac JSON-schema validator whose schemas all come from :func:`schema_cache`."""
    from pystac.validation import JsonSchemaSTACValidator

    v = JsonSchemaSTACValidator()
    v.schema_cache.update(schema_cache())
    return v


def validate_item(item: pystac.Item | dict, validator: Any = None) -> list[str]:
    """Validate an Item (object or dict) against the core and its extensions' schemas, offline.

    Returns the schema URIs it was checked against. Raises :class:`pystac.errors.STACValidationError`
    when it does not conform, and :class:`ValueError` naming an extension schema that is not
    vendored (instead of fetching it).
    """
    import pystac
    from pystac.validation import validate_dict

    d = item.to_dict(include_self_link=False) if isinstance(item, pystac.Item) else item
    validator = validator or offline_validator()
    missing = [e for e in d.get("stac_extensions", []) if e not in validator.schema_cache]
    if missing:
        raise ValueError(f"STAC extension schema(s) not vendored in pipeline/mapping/stac_schemas: {missing}")
    return list(validate_dict(d, validator=validator))


# ----------------------------------------------------------------------------- catalogs
def _place(item: pystac.Item, path: Path) -> None:
    """Give ``item`` the JSON path ``path`` and make its asset and link hrefs relative to it
    (pystac relativises hierarchical links only; the report, metrics and model links too)."""
    item.set_self_href(str(path))
    item.make_asset_hrefs_relative()
    here = Path(path).parent
    for link in item.links:
        if link.rel in ("describedby", "related") and isinstance(link.target, str) and os.path.isabs(link.target):
            link.target = os.path.relpath(link.target, here)


def write_run_catalog(
    stac_dir: Path, catalog_id: str, title: str, description: str, items: Sequence[tuple[pystac.Item, Path]]
) -> list[Path]:
    """Write a self-contained Catalog with ``items`` (each with the path its JSON goes to) into
    ``stac_dir``, whole or not at all: built in a hidden sibling folder, validated, then renamed.
    Returns the files written."""
    import pystac

    stac_dir = Path(stac_dir)
    tmp = stac_dir.with_name(f".{stac_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cat = pystac.Catalog(id=catalog_id, description=description, title=title)
    cat.set_self_href(str(stac_dir / "catalog.json"))
    validator = offline_validator()
    for item, path in items:
        cat.add_item(item)
        _place(item, path)
        validate_item(item, validator)
    try:
        cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, dest_href=str(tmp))
        old = stac_dir.with_name(f".{stac_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if stac_dir.exists():
            os.replace(stac_dir, old)
        os.replace(tmp, stac_dir)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        full = as_out_of_space(e, stac_dir, lambda: _json_bytes(cat), "the STAC catalog")
        if full is not None:
            raise full from e
        raise OutputWriteError(f"{stac_dir}: writing the STAC catalog failed ({e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(p for p in stac_dir.rglob("*.json"))


def _json_bytes(cat: pystac.Catalog) -> int:
    """About the bytes of a catalog's JSON files (asked only when the disk is full)."""
    objs = [cat, *cat.get_items(recursive=True)]
    return sum(len(json.dumps(o.to_dict(include_self_link=False), indent=2)) for o in objs)


def _atomic_stac_io() -> pystac.StacIO:
    """pystac's file I/O, each JSON written atomically (:func:`~pipeline.core.atomic.write_text`)."""
    from pystac.stac_io import DefaultStacIO

    class AtomicStacIO(DefaultStacIO):
        def write_text_to_href(self, href: str, txt: str) -> None:
            write_text(href, txt)

    return AtomicStacIO()


def write_item(item: pystac.Item, path: Path) -> Path:
    """Validate ``item`` offline and write its JSON to ``path`` (hrefs relative to it), atomically."""
    _place(item, path)
    validate_item(item)
    return write_text(path, json.dumps(item.to_dict(include_self_link=False), indent=2) + "\n")


def add_to_catalog(catalog_path: Path, item_paths: Iterable[Path], title: str, description: str) -> Path:
    """Add (or replace, by id) the Items whose JSON files are ``item_paths`` to the catalog at
    ``catalog_path``, creating it if needed; each Item stays where it is and gets its parent and
    root links. Used by ``serve``: the outbox's catalog grows cycle by cycle."""
    import pystac

    catalog_path = Path(catalog_path)
    if catalog_path.exists():
        cat = pystac.Catalog.from_file(str(catalog_path))
    else:
        cat = pystac.Catalog(id=catalog_path.parent.name or "outbox", description=description, title=title)
    cat.set_self_href(str(catalog_path))
    validator = offline_validator()
    for path in item_paths:
        item = pystac.Item.from_file(str(path))
        if cat.get_item(item.id) is not None:
            cat.remove_item(item.id)
        cat.add_item(item)
        item.set_self_href(str(path))
        validate_item(item, validator)
    try:  # each JSON file replaced whole: a full disk leaves the previous catalog, not half of one
        cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=_atomic_stac_io())
    except OSError as e:
        raise OutputWriteError(f"{catalog_path}: writing the STAC catalog failed ({e})") from e
    return catalog_path
