"""The CLI end to end on the real demo scene, and its handling of bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import prefect_api, strip_timings  # noqa: E402,F401

from pipeline.cli.main import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _landcover(*args, cwd=None, api_url=None):
    """``landcover ...`` in a subprocess: on the session's Prefect test server when ``api_url`` is
    given, else with the CLI's own temporary server (the default a user gets)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, nc_scene, prefect_api):
    # On the session's test server: the default engine (auto) with a Prefect API configured is a
    # Prefect flow run. The CLI's own temporary server is started by
    # test_bad_input_found_inside_the_flow_is_one_line, and runs whole runs in tests/test_interrupt.py.
    out = tmp_path_factory.mktemp("runs")
    proc = _landcover(
        "demo", "--models", "decision_tree", "--out", str(out), "--run-id", "e2e", "--no-progress", api_url=prefect_api
    )
    assert proc.returncode == 0, proc.stderr
    return out / "e2e", proc


def test_demo_map_is_on_the_input_grid_with_colormap(demo_run, nc_scene):
    run, _ = demo_run
    with rasterio.open(nc_scene / "lsat7_2000_10.tif") as src, rasterio.open(run / "maps" / "decision_tree.tif") as m:
        assert (m.crs, m.transform, m.width, m.height) == (src.crs, src.transform, src.width, src.height)
        cmap = m.colormap(1)
        assert cmap[1][:3] == (0xE3, 0x1A, 0x1C) and cmap[6][:3] == (0x21, 0x66, 0xAC)
        assert m.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and m.overviews(1)
        labels = m.read(1)
        src_valid = src.read_masks(1) > 0
    # nodata exactly where the input has none; class ids elsewhere.
    assert ((labels == 255) == ~src_valid).all()
    assert set(np.unique(labels[src_valid])) <= set(range(1, 8))
    # the class names travel with the map (tag and raster attribute table) and its QGIS/ArcGIS sidecars
    from pipeline.inputs.class_table import read_pam_names, read_tag_names

    names = {c["id"]: c["name"] for c in json.loads((run / "metrics.json").read_text())["classes"]}
    assert (
        read_tag_names(run / "maps" / "decision_tree.tif")
        == read_pam_names(run / "maps" / "decision_tree.tif")
        == names
    )
    assert (run / "maps" / "decision_tree.qml").is_file() and (run / "maps" / "decision_tree.clr").is_file()


def test_demo_metrics_agree_with_confusion_matrix(demo_run):
    run, _ = demo_run
    m = json.loads((run / "metrics.json").read_text())
    assert [c["name"] for c in m["classes"]][:2] == ["developed", "agriculture"]
    dt = m["models"]["decision_tree"]
    cm = np.array(dt["confusion_matrix"]["matrix"])
    names = dt["confusion_matrix"]["labels"]
    assert np.isclose(dt["overall_accuracy"], np.trace(cm) / cm.sum())
    for i, name in enumerate(names):
        pc = dt["per_class"][name]
        assert pc["support"] == cm[i].sum()
        tp = cm[i, i]
        # undefined is null in metrics.json, never 0
        assert pc["recall"] == pytest.approx(tp / cm[i].sum()) if cm[i].sum() else pc["recall"] is None
        assert pc["precision"] == pytest.approx(tp / cm[:, i].sum()) if cm[:, i].sum() else pc["precision"] is None
    # Test predictions stored per sample match the matrix too.
    ev = pd.read_parquet(run / "eval" / "decision_tree.parquet")
    assert len(ev) == cm.sum()
    samples = pd.read_parquet(run / "samples.parquet")
    assert {"x", "y", "row", "col", "class_id", "class_name", "group", "split"} <= set(samples.columns)
    # The demo evaluates by spatial 5-fold CV: the table pools the out-of-fold predictions, each sample
    # predicted once, by the model of the fold whose test set holds it (folds.json, samples' fold).
    folds = json.loads((run / "folds.json").read_text())
    assert m["split"]["strategy"] == "kfold" and len(folds) == m["split"]["k"] == 5
    assert ev["sample"].is_unique and sorted(ev["fold"].unique()) == list(range(5))
    for i, f in enumerate(folds):
        assert sorted(ev.loc[ev["fold"] == i, "sample"]) == f["test"]
        assert not set(f["test"]) & set(f["train"])
    assert (samples.loc[ev["sample"], "fold"].to_numpy() == ev["fold"].to_numpy()).all()
    assert (samples.loc[folds[0]["test"], "split"] == "test").all()  # samples' split is fold 0's
    assert m["split"]["audit"]["train_patches_touching_test_pixels"] == 0
    assert m["split"]["audit"]["test_patches_touching_train_pixels"] == 0
    # The random-split contrast: same model, same samples, random pixel split.
    c = m["random_split_contrast"]["decision_tree"]
    assert c["overall_accuracy_spatial"] == dt["overall_accuracy"]
    assert np.isclose(c["gap"], c["overall_accuracy_random"] - c["overall_accuracy_spatial"])
    import geopandas as gpd
    import pyogrio

    assert {name for name, _ in pyogrio.list_layers(run / "splits.gpkg")} == {"blocks", "buffer", "samples"}
    blocks = gpd.read_file(run / "splits.gpkg", layer="blocks")
    assert set(blocks["split"]) <= {"train", "validation", "test"} and blocks.crs == samples_crs(run)


def test_demo_run_directory_contract(demo_run):
    run, proc = demo_run
    for name in (
        "config.yaml",
        "manifest.json",
        "samples.parquet",
        "metrics.json",
        "models/decision_tree.skops",
        "maps/decision_tree_confidence.tif",
        "report.html",
        "report.md",
        "splits.gpkg",
    ):
        assert (run / name).exists(), name
    man = json.loads((run / "manifest.json").read_text())
    assert man["seed"] == 42 and man["packages"]["numpy"] and man["started"] <= man["finished"]
    assert {s["name"] for s in man["stages"]} >= {"prepare", "train:decision_tree", "map:decision_tree", "assess"}
    assert all(v["sha256"] and v["bytes"] > 0 for v in man["inputs"].values())
    # the default engine with a Prefect API configured (the session's server) ran a Prefect flow run
    assert man["engine"] == "prefect" and man["prefect_flow_run_id"]
    assert "engine: prefect (Prefect API configured" in (run / "run.log").read_text()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert list(cfg["models"]) == ["decision_tree"] and cfg["models"]["decision_tree"]["max_depth"] is None
    assert cfg["patch"] == {"size": 9} and cfg["split"]["strategy"] == "auto"
    split = json.loads((run / "split.json").read_text())  # what auto chose for the demo's 31 polygons
    assert (split["requested"], split["strategy"], split["k"]) == ("auto", "kfold", 5)
    assert (run / "folds.json").is_file() and {f"fold-{i}:decision_tree" for i in range(5)} | {
        "refit:decision_tree"
    } <= {s["name"] for s in man["stages"]}
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert "decision_tree" in proc.stdout


def test_demo_run_directory_shows_every_deliverable(demo_run):
    """configs/demo.yaml asks for a 0.5 ha MMU and polygons; every run writes legends, styles and STAC."""
    import geopandas as gpd
    from rasterio.features import sieve

    from pipeline.evaluation.areas import class_pixels_and_areas
    from pipeline.mapping.stac import validate_item

    run, _ = demo_run
    maps = run / "maps"
    for name in (
        "decision_tree_legend.png",
        "decision_tree_confidence.qml",
        "decision_tree_confidence_legend.png",
        "decision_tree_mmu.tif",
        "decision_tree_mmu.qml",
        "decision_tree_mmu_legend.png",
        "decision_tree.gpkg",
    ):
        assert (maps / name).is_file(), name
    with rasterio.open(maps / "decision_tree.tif") as r, rasterio.open(maps / "decision_tree_mmu.tif") as s:
        raw, mmu, px = r.read(1), s.read(1), abs(r.transform.a * r.transform.e)
        assert s.tags()["MINIMUM_MAPPING_UNIT"] == "0.5 ha"
    np.testing.assert_array_equal(mmu, sieve(raw, int(np.ceil(5000 / px)), mask=raw != 255))
    g = gpd.read_file(maps / "decision_tree.gpkg")
    _, area_ha = class_pixels_and_areas(maps / "decision_tree_mmu.tif")
    got = g.groupby("class_id")["area_ha"].sum()
    assert {int(k): round(v, 6) for k, v in got.items()} == {k: round(v, 6) for k, v in area_ha.items()}
    m = json.loads((run / "metrics.json").read_text())["models"]["decision_tree"]
    assert "raw classification" in m["area_map"]["map"] and m["class_areas_mmu"]["mmu"] == "0.5 ha"
    cat = json.loads((run / "stac" / "catalog.json").read_text())
    assert [lk["href"] for lk in cat["links"] if lk["rel"] == "item"] == ["./decision_tree/decision_tree.json"]
    item = json.loads((run / "stac" / "decision_tree" / "decision_tree.json").read_text())
    validate_item(item)
    assert {"classes", "classes_mmu", "confidence", "polygons", "legend"} <= set(item["assets"])
    assert {lk["href"] for lk in item["links"]} >= {"../../report.html", "../../metrics.json"}
    assert "maps/decision_tree_legend.png" in (run / "report.md").read_text()


def test_demo_names_the_water_polygon_every_model_contradicts(demo_run):
    """5-fold CV tests every water polygon once; feature 23 is mapped as something else, and its NIR/SWIR
    are far off the water pixels of the fold that tested it."""
    run, _ = demo_run
    pol = json.loads((run / "metrics.json").read_text())["polygons"]
    water = {p["group"]: p for p in pol["polygons"] if p["class_name"] == "water"}
    ev = pd.read_parquet(run / "eval" / "decision_tree.parquet")
    samples = pd.read_parquet(run / "samples.parquet")
    tested = samples.loc[ev["sample"]]
    assert set(water) == set(tested.loc[tested["class_name"] == "water", "group"]) and len(water) > 1
    mine = tested["group"].to_numpy() == 23
    assert water[23]["contradicted"] and water[23]["accuracy"]["decision_tree"] == pytest.approx(
        float((ev["y_pred"].to_numpy()[mine] == ev["y_true"].to_numpy()[mine]).mean())
    )
    (s,) = [x for x in pol["suspects"] if x["group"] == 23]
    ratio = dict(zip(s["bands"], s["ratio"]))
    assert ratio["nir"] > 3 and ratio["swir1"] > 3
    # recomputed: centre pixels of feature 23 against the water training pixels of its fold (folds.json)
    (fold,) = ev.loc[mine, "fold"].unique()
    train = json.loads((run / "folds.json").read_text())[fold]["train"]
    assert 23 not in set(samples.loc[train, "group"])
    patches = np.load(run / "patches.npy", mmap_mode="r")
    centre = patches[:, :, patches.shape[-2] // 2, patches.shape[-1] // 2]
    own = centre[ev.loc[mine, "sample"].to_numpy()].mean(axis=0)
    water_train = [i for i in train if samples.at[i, "class_name"] == "water"]
    assert s["class_training"]["pixels"] == len(water_train)
    assert s["ratio"] == pytest.approx((own / centre[water_train].mean(axis=0)).tolist(), rel=1e-4)
    md = (run / "report.md").read_text()
    assert "| feature 23 | water |" in md and "Feature 23 (water, " in md and "report_files/suspect_spectra.png" in md


def test_demo_decision_tree_confidence_is_not_constant(demo_run):
    run, _ = demo_run
    c = json.loads((run / "metrics.json").read_text())["models"]["decision_tree"]["confidence"]
    assert not c["degenerate"] and c["levels"] > 2
    with rasterio.open(run / "maps" / "decision_tree_confidence.tif") as src:
        conf = src.read(1)
    assert len(np.unique(conf[conf != 255])) > 2
    assert "## Confidence layers" in (run / "report.md").read_text()


def test_map_command_applies_saved_model(demo_run, nc_scene, tmp_path):
    run, _ = demo_run
    bands = [str(nc_scene / f"lsat7_2000_{b}.tif") for b in (10, 20, 30, 40, 50)]
    out = tmp_path / "again.tif"
    assert (
        main(
            [
                "map",
                "--model",
                str(run / "models" / "decision_tree.skops"),
                "--raster",
                *bands,
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    with rasterio.open(out) as a, rasterio.open(run / "maps" / "decision_tree.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    # Wrong band count: a clear error, exit code 2.
    assert (
        main(
            [
                "map",
                "--model",
                str(run / "models" / "decision_tree.skops"),
                "--raster",
                *bands[:3],
                "--out",
                str(tmp_path / "x.tif"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.tif").exists()


def samples_crs(run):
    with rasterio.open(run / "maps" / "decision_tree.tif") as m:
        return m.crs


def _write_cfg(tmp_path, nc_scene, **changes):
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["models"] = {"decision_tree": {}}
    for dotted, value in changes.items():
        if dotted == "device" and __import__("torch").cuda.is_available():
            pytest.skip("this machine has CUDA")
        node = cfg
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"patch__size": 8}, "patch.size: patch size must be odd"),
        ({"models__decision_tree": {"max_deep": 3}}, "unknown key 'models.decision_tree.max_deep'"),
        ({"labels__field": "klass"}, "no field 'klass'"),
        ({"rasters__paths": ["nope.tif"]}, "nope.tif: raster file not found"),
        ({"classes": [{"id": 1, "name": "developed"}, {"id": 2, "name": "forest"}]}, "labels not in the class table"),
        ({"labels__path": "missing.shp"}, "missing.shp: label file not found"),
        ({"models": {"cnn": {}}, "device": "cuda"}, "'cuda' requested but CUDA is not available"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, nc_scene, capsys, changes, message, prefect_api):
    # prefect_api: the label field is read inside the flow, on the session's test server (not a
    # second, in-process temporary server)
    cfg = _write_cfg(tmp_path, nc_scene, **changes)
    code = main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--no-progress", "--engine", "prefect"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("landcover: error:")
    assert not list((tmp_path / "runs").rglob("metrics.json"))


def test_bad_input_subprocess_has_no_traceback(tmp_path, nc_scene):
    cfg = _write_cfg(tmp_path, nc_scene, patch__size=4)
    proc = _landcover("run", str(cfg), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    dbg = _landcover("--debug", "run", str(cfg), "--out", str(tmp_path / "r"))
    assert dbg.returncode != 0 and "Traceback" in dbg.stderr


def test_bad_input_found_inside_the_flow_is_one_line(tmp_path, nc_scene):
    # The label field is only read by the prepare stage, inside the Prefect flow run, whose engine
    # logs task failures with tracebacks: the console must still show one error line.
    cfg = _write_cfg(tmp_path, nc_scene, labels__field="klass")
    proc = _landcover("run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress", "--engine", "prefect")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "klass" in ln]
    assert len(errors) == 1 and errors[0].startswith("landcover: error:") and "no field 'klass'" in errors[0]
    # bad input before any stage finished leaves no run directory that would look like a run ...
    assert not [p for p in (tmp_path / "r").glob("*") if p.is_dir()]
    # ... and --debug shows the full story
    dbg = _landcover("--debug", "run", str(cfg), "--out", str(tmp_path / "r"), "--no-progress")
    assert dbg.returncode != 0 and "Traceback" in dbg.stderr and "no field 'klass'" in dbg.stderr


def test_engine_local_gives_the_prefect_runs_metrics_and_outputs(demo_run, tmp_path):
    run, _ = demo_run
    out = tmp_path / "runs"
    assert (
        main(
            [
                "demo",
                "--models",
                "decision_tree",
                "--engine",
                "local",
                "--out",
                str(out),
                "--run-id",
                "loc",
                "--no-progress",
            ]
        )
        == 0
    )
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run, out / "loc"))
    assert strip_timings(a["models"]["decision_tree"]) == strip_timings(b["models"]["decision_tree"])
    for key in ("classes", "split", "random_split_contrast", "polygons", "failed_models"):
        assert a.get(key) == b.get(key), key
    files = lambda r: {p.relative_to(r).as_posix() for p in r.rglob("*") if p.is_file()}  # noqa: E731
    assert files(run) == files(out / "loc")
    # the same stage store: a second local run, from Python this time, reuses every stage but the report
    from pipeline import read_metrics, run_config

    again = run_config(REPO / "configs" / "demo.yaml", models=["decision_tree"], out=str(out), run_id="again")
    assert again == out / "again"
    stages = json.loads((again / "manifest.json").read_text())["stages"]
    assert {s["name"] for s in stages if not s["cached"]} == {"report"}
    assert read_metrics(again)["models"] == b["models"]


def test_library_maps_from_str_paths(demo_run, nc_scene, tmp_path):
    """classify_raster takes the raster as str paths (bands matched by name) and str outputs."""
    from pipeline.mapping.classify import classify_raster
    from pipeline.models import load_model

    run, _ = demo_run
    model = load_model(str(run / "models" / "decision_tree.skops"))
    bands = [str(nc_scene / f"lsat7_2000_{b}.tif") for b in (10, 20, 30, 40, 50)]
    res = classify_raster(model, bands, str(tmp_path / "m.tif"), str(tmp_path / "c.tif"), progress=False)
    with rasterio.open(res["path"]) as a, rasterio.open(run / "maps" / "decision_tree.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    assert (tmp_path / "m.qml").exists() and (tmp_path / "c.tif").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["PREFECT_API_URL", "--dask"])
def test_unreachable_service_is_one_line_exit_2_before_a_run_directory(tmp_path, nc_scene, where):
    port = _closed_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args = ["demo", "--models", "decision_tree", "--out", str(tmp_path / "runs")]
    if where == "PREFECT_API_URL":
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    else:
        env.pop("PREFECT_API_URL", None)
        args += ["--dask", f"tcp://127.0.0.1:{port}"]
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"landcover: error: {where}") and f"127.0.0.1:{port}" in lines[0]
    assert not (tmp_path / "runs").exists()
