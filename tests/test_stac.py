"""STAC Items of class maps (pipeline.mapping.stac) validate against the STAC and extension JSON
schemas offline (no network: sockets refused), carry the class table, projection, bands and file
checksums of what they describe, and fail validation when they are wrong."""

from __future__ import annotations

import copy
import hashlib
import json
import socket

import numpy as np
import pystac
import pytest
import rasterio
from conftest import write_raster
from pystac.errors import STACValidationError

from pipeline.inputs.class_table import NODATA_CLASS, ClassTable
from pipeline.mapping.deliver import deliver_map
from pipeline.mapping.legends import legend_path, write_class_legend, write_confidence_sidecars
from pipeline.mapping.settings import MinimumMappingUnit
from pipeline.mapping.stac import (
    EXTENSION_SCHEMAS,
    MapFiles,
    MapLinks,
    add_to_catalog,
    map_item,
    sidecar_assets,
    validate_item,
    write_item,
    write_run_catalog,
)

CLASSES = ClassTable.of([1, 2, 7], ["bare soil", "water", "forest (mixed)"], ["#d9b38c", "#1f78b4", "#1b7837"])


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Validation must not fetch anything: any connection attempt fails the test."""

    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _delivered(tmp_path, crs="EPSG:32633", origin=(500000.0, 4000000.0), res=10.0):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    m = np.repeat(np.repeat(rng.choice([1, 2, 7], (12, 16)), 5, 0), 5, 1).astype(np.uint8)
    m[rng.random(m.shape) < 0.05] = 2
    m[:6, :6] = NODATA_CLASS
    path = write_raster(tmp_path / "map.tif", m, crs=crs, origin=origin, res=res, nodata=NODATA_CLASS)
    conf = write_raster(
        tmp_path / "map_confidence.tif", np.full(m.shape, 80, np.uint8), crs=crs, origin=origin, res=res
    )
    write_confidence_sidecars(conf)
    write_class_legend(legend_path(path), CLASSES)  # as write_class_map does for a mapped class map
    made = deliver_map(path, CLASSES, MinimumMappingUnit.parse("4"), tmp_path / "map.gpkg")
    mmu = tmp_path / "map_mmu.tif"
    files = MapFiles(
        map=path,
        confidence=conf,
        mmu_map=mmu,
        mmu="4 px",
        polygons=tmp_path / "map.gpkg",
        extra=sidecar_assets(path, conf, mmu),
    )
    return files, made


def test_item_validates_offline_and_describes_the_map(tmp_path):
    files, _ = _delivered(tmp_path)
    (tmp_path / "report.html").write_text("<html></html>")
    item = map_item("m", files, CLASSES, MapLinks(report=tmp_path / "report.html"), title="a map")
    path = write_item(item, tmp_path / "stac" / "m.json")
    d = json.loads(path.read_text())
    used = validate_item(d)
    assert set(EXTENSION_SCHEMAS) <= set(used) and any("item.json" in u for u in used)
    # projection: the map's grid
    with rasterio.open(files.map) as src:
        assert d["properties"]["proj:code"] == "EPSG:32633"
        assert d["properties"]["proj:shape"] == [src.height, src.width]
        assert d["properties"]["proj:transform"] == list(src.transform)[:6]
    # the class table, with machine names, titles and colours; the nodata value flagged
    classes = d["assets"]["classes"]["classification:classes"]
    assert [(c["value"], c["name"], c["title"], c.get("color_hint")) for c in classes] == [
        (1, "bare_soil", "bare soil", "D9B38C"),
        (2, "water", "water", "1F78B4"),
        (7, "forest_mixed", "forest (mixed)", "1B7837"),
        (255, "nodata", "no data", None),
    ]
    assert classes[-1]["nodata"] is True
    assert d["assets"]["confidence"]["raster:bands"][0] == {
        "nodata": 255,
        "sampling": "area",
        "data_type": "uint8",
        "unit": "%",
        "spatial_resolution": 10.0,
    }
    # files: relative hrefs, sizes and SHA-256 multihashes recomputed here
    for key in ("classes", "classes_mmu", "confidence", "polygons", "legend", "confidence_style"):
        a = d["assets"][key]
        f = (path.parent / a["href"]).resolve()
        assert not a["href"].startswith("/") and f.is_file(), key
        assert a["file:size"] == f.stat().st_size
        assert a["file:checksum"] == "1220" + hashlib.sha256(f.read_bytes()).hexdigest()
    assert d["assets"]["polygons"]["type"] == "application/geopackage+sqlite3"
    assert [(lk["rel"], lk["href"]) for lk in d["links"] if lk["rel"] == "describedby"] == [
        ("describedby", "../report.html")
    ]


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["assets"]["classes"]["classification:classes"][0].update(color_hint="#D9B38C"),
        lambda d: d["assets"]["classes"]["classification:classes"][0].update(name="bare soil"),
        lambda d: d["properties"].update({"proj:shape": [10]}),
        lambda d: d["assets"]["confidence"]["raster:bands"][0].update(data_type="byte"),
        lambda d: d["assets"]["classes"].update({"file:size": -1}),
        lambda d: d.pop("geometry"),
    ],
)
def test_a_wrong_item_fails_validation(tmp_path, break_it):
    files, _ = _delivered(tmp_path)
    d = map_item("m", files, CLASSES).to_dict(include_self_link=False)
    validate_item(copy.deepcopy(d))  # as written: valid
    break_it(d)
    with pytest.raises(STACValidationError):
        validate_item(d)


def test_an_extension_schema_that_is_not_vendored_is_named_not_fetched(tmp_path):
    files, _ = _delivered(tmp_path)
    d = map_item("m", files, CLASSES).to_dict(include_self_link=False)
    d["stac_extensions"].append("https://stac-extensions.github.io/eo/v2.0.0/schema.json")
    with pytest.raises(ValueError, match="eo/v2.0.0"):
        validate_item(d)


def test_geographic_and_custom_crs(tmp_path):
    geo, _ = _delivered(tmp_path / "geo", crs="EPSG:4326", origin=(10.0, 60.0), res=0.001)
    d = map_item("g", geo, CLASSES).to_dict(include_self_link=False)
    validate_item(d)
    assert d["properties"]["proj:code"] == "EPSG:4326" and d["bbox"][0] == pytest.approx(10.0)
    assert "spatial_resolution" not in d["assets"]["classes"]["raster:bands"][0]  # degrees are not metres
    custom = "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +x_0=0 +y_0=0 +datum=WGS84 +units=m"
    cu, _ = _delivered(tmp_path / "custom", crs=custom, origin=(0.0, 1_000_000.0))
    d = map_item("c", cu, CLASSES).to_dict(include_self_link=False)
    validate_item(d)
    assert d["properties"]["proj:code"] is None and "PROJCRS" in d["properties"]["proj:wkt2"]
    lon, lat = np.array(d["geometry"]["coordinates"][0]).T
    assert -100 < lon.min() < lon.max() < -90 and 30 < lat.min() < lat.max() < 35  # footprint in WGS 84


def test_run_catalog_is_whole_and_items_replace_in_an_outbox_catalog(tmp_path):
    files, _ = _delivered(tmp_path)
    stac = tmp_path / "stac"
    written = write_run_catalog(
        stac, "run-1", "maps", "the maps", [(map_item("m", files, CLASSES), stac / "m" / "m.json")]
    )
    assert sorted(p.relative_to(stac).as_posix() for p in written) == ["catalog.json", "m/m.json"]
    cat = pystac.Catalog.from_file(str(stac / "catalog.json"))
    assert [i.id for i in cat.get_items()] == ["m"] and not list(tmp_path.glob(".stac*"))
    for it in cat.get_items():
        validate_item(it)
        assert (stac / "m" / it.assets["classes"].href).resolve() == files.map.resolve()
    # serve's outbox catalog: two cycles, the second re-maps scene "a" and adds "b"
    out = tmp_path / "outbox"
    for cycle in (["a"], ["a", "b"]):
        paths = []
        for name in cycle:
            paths.append(write_item(map_item(name, files, CLASSES), out / name / f"{name}.stac.json"))
        add_to_catalog(out / "catalog.json", paths, "maps", "serve's maps")
    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert sorted(i.id for i in cat.get_items()) == ["a", "b"]
    for it in cat.get_items():
        validate_item(it)
        assert it.get_root().id == cat.id
