"""Tests of the analysts' sample tools and their CLI subcommands (pipeline.evaluation.reference_sample)."""

from __future__ import annotations

import argparse
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.cli.assess import register
from pipeline.core.errors import InputError
from pipeline.evaluation.area_estimates import area_adjusted
from pipeline.evaluation.reference_sample import allocate, assess_error_matrix, design_sample

NAMES = {1: "water", 2: "forest", 3: "urban"}


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="landcover")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def class_map(tmp_path):
    """60 x 80 map, 20 m pixels (0.04 ha), EPSG:32633: water 600 px, urban 40 px, forest the rest,
    one nodata row."""
    data = np.full((60, 80), 2, np.uint8)
    data[:, :10] = 1  # 600 water
    data[50:54, 70:80] = 3  # 40 urban
    data[59, :] = 255  # nodata row
    path = tmp_path / "map.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=80,
        height=60,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(400_000, 5_100_000, 20, 20),
        nodata=255,
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        dst.write(data, 1)
        dst.update_tags(class_names=json.dumps({str(k): v for k, v in NAMES.items()}))
    return path, data


def test_allocations():
    px = {1: 1000, 2: 100_000, 3: 30}
    assert allocate(px, 300, "proportional") == {1: 3, 2: 297, 3: 0}
    assert allocate(px, 300, "equal") == {1: 100, 2: 100, 3: 30}  # urban capped at its 30 pixels
    o = allocate(px, 300, "olofsson", min_per_class=50)
    assert o == {1: 50, 2: 220, 3: 30}
    with pytest.raises(InputError, match="too small"):
        allocate(px, 5, "equal")
    with pytest.raises(InputError, match="min-per-class"):
        allocate(px, 120, "olofsson", min_per_class=50)


def test_design_then_assess_roundtrip(class_map, tmp_path):
    path, data = class_map
    out = tmp_path / "sample.gpkg"
    assert (
        _cli(["assess-design", str(path), "--n", "90", "--out", str(out), "--min-per-class", "20", "--seed", "3"]) == 0
    )
    s = gpd.read_file(out)
    assert len(s) == 90 and not list(tmp_path.glob(".*tmp*"))
    assert {"map_class", "map_class_name", "reference"} <= set(s.columns)
    assert s.crs.to_epsg() == 32633
    counts = s.groupby("map_class").size().to_dict()
    assert counts[3] == 20 and counts[1] == 20 and counts[2] == 50
    # the points are pixel centres of their class
    with rasterio.open(path) as src:
        vals = np.array([v[0] for v in src.sample(zip(s.geometry.x, s.geometry.y))])
    assert (vals == s["map_class"].to_numpy()).all()
    assert set(s["map_class_name"]) == {"water", "forest", "urban"}
    assert len(s.drop_duplicates(["row", "col"])) == 90
    # same seed, same sample
    again = design_sample(path, 90, "olofsson", 20, seed=3)
    assert (again["row"].to_numpy() == s["row"].to_numpy()).all()

    # the analyst labels it: urban points are really forest; labels by name, points in WGS84
    s["reference"] = np.where(s["map_class"] == 3, "forest", s["map_class_name"])
    labelled = tmp_path / "labelled.gpkg"
    s.to_crs(4326).to_file(labelled, driver="GPKG")
    res_json = tmp_path / "out.json"
    assert _cli(["assess", str(path), str(labelled), "--field", "reference", "--json", str(res_json)]) == 0
    r = json.loads(res_json.read_text())
    px = {1: 590, 2: 80 * 59 - 590 - 40, 3: 40}
    expected = area_adjusted(
        np.array([[20, 0, 0], [0, 50, 0], [0, 20, 0]]), np.array([px[1], px[2], px[3]]) * 0.04, list(NAMES.values())
    )
    assert r["overall_accuracy"] == pytest.approx(expected["overall_accuracy"])
    assert r["classes"]["urban"]["users_accuracy"] == 0.0
    assert r["classes"]["forest"]["area_ha"] == pytest.approx((px[2] + px[3]) * 0.04)
    assert r["classes"]["water"]["area_ci95_ha"] == 0.0
    for k in (
        "area_ha",
        "area_ci95_ha",
        "users_accuracy",
        "users_accuracy_ci95",
        "producers_accuracy",
        "producers_accuracy_ci95",
    ):
        assert k in r["classes"]["forest"]
    assert "overall_accuracy_ci95" in r


def test_assess_sample_errors(class_map, tmp_path):
    path, _ = class_map
    s = design_sample(path, 30, "equal", seed=1)
    s["ref"] = s["map_class_name"]
    good = tmp_path / "s.gpkg"
    s.to_file(good, driver="GPKG")
    out = str(tmp_path / "o.json")
    with pytest.raises(InputError, match="no field 'label'"):
        _cli(["assess", str(path), str(good), "--field", "label", "--json", out])
    with pytest.raises(InputError, match="not found"):
        _cli(["assess", str(path), str(tmp_path / "nope.gpkg"), "--field", "ref", "--json", out])
    with pytest.raises(InputError, match="not found"):
        _cli(["assess", str(tmp_path / "nomap.tif"), str(good), "--field", "ref", "--json", out])
    s.loc[0, "ref"] = "swamp"
    bad = tmp_path / "bad.gpkg"
    s.to_file(bad, driver="GPKG")
    with pytest.raises(InputError, match="unknown class 'swamp'"):
        _cli(["assess", str(path), str(bad), "--field", "ref", "--json", out])
    s.loc[0, "ref"] = ""
    s.to_file(bad, driver="GPKG")
    with pytest.raises(InputError, match="no label"):
        _cli(["assess", str(path), str(bad), "--field", "ref", "--json", out])
    with pytest.raises(InputError, match="too small"):
        _cli(["assess-design", str(path), "--n", "4", "--out", str(tmp_path / "x.gpkg")])
    # ids work as labels too
    s["ref"] = s["map_class"].astype(str)
    s.to_file(bad, driver="GPKG")
    assert _cli(["assess", str(path), str(bad), "--field", "ref", "--json", out]) == 0
    assert json.loads(open(out).read())["overall_accuracy"] == pytest.approx(1.0)


OLOF_CSV = """map\\reference,deforestation,forest_gain,stable_forest,stable_nonforest
deforestation,66,0,5,4
forest_gain,0,55,8,12
stable_forest,1,0,153,11
stable_nonforest,2,1,9,313
"""
OLOF_AREAS = "class,area_ha\ndeforestation,18000\nforest_gain,13500\nstable_forest,288000\nstable_nonforest,580500\n"


def test_error_matrix_cli_reproduces_olofsson(tmp_path):
    counts, areas, out = tmp_path / "c.csv", tmp_path / "a.csv", tmp_path / "o.json"
    counts.write_text(OLOF_CSV)
    # areas given in another order than the matrix
    areas.write_text("class,area_ha\n" + "\n".join(reversed(OLOF_AREAS.strip().splitlines()[1:])) + "\n")
    assert _cli(["assess", "--error-matrix", str(counts), "--areas", str(areas), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    d = r["classes"]["deforestation"]
    assert (round(d["area_ha"]), round(d["area_ci95_ha"])) == (21_158, 6_158)
    assert (round(d["users_accuracy"], 2), round(d["users_accuracy_ci95"], 2)) == (0.88, 0.07)
    assert (round(d["producers_accuracy"], 2), round(d["producers_accuracy_ci95"], 2)) == (0.75, 0.21)
    assert round(r["overall_accuracy"], 2) == 0.95 and round(r["overall_accuracy_ci95"], 2) == 0.02


def test_error_matrix_bad_inputs(tmp_path):
    counts, areas = tmp_path / "c.csv", tmp_path / "a.csv"
    counts.write_text(OLOF_CSV)
    areas.write_text(OLOF_AREAS.replace("forest_gain", "regrowth"))
    with pytest.raises(InputError, match="a.csv"):
        assess_error_matrix(counts, areas)
    areas.write_text(OLOF_AREAS.replace("area_ha", "hectares"))
    with pytest.raises(InputError, match="area_ha"):
        assess_error_matrix(counts, areas)
    areas.write_text(OLOF_AREAS)
    counts.write_text(OLOF_CSV.replace(",stable_nonforest\n", ",nonforest\n", 1))
    with pytest.raises(InputError, match="c.csv"):
        assess_error_matrix(counts, areas)
    with pytest.raises(InputError, match="not found"):
        assess_error_matrix(tmp_path / "none.csv", areas)
    with pytest.raises(InputError, match="go together"):
        _cli(["assess", "--error-matrix", str(counts), "--json", str(tmp_path / "o.json")])
