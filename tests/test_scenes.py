"""Several scenes, tiles and dates in one run: config forms, date stacks, scene checks, runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from conftest import run_cli, write_raster

from bench.scenes import CLASSES, make_tiles, tile_classes, tiles_config
from pipeline.config import load_config, parse_config
from pipeline.core.errors import InputError
from pipeline.inputs.raster import RasterAlignmentWarning, RasterStack
from pipeline.inputs.scenes import check_scenes, resolve_scenes

BASE = {"classes": CLASSES}


# ----------------------------------------------------------------------------- config
def test_single_raster_config_is_one_scene_named_after_the_run(tmp_path):
    cfg = parse_config({**BASE, "name": "my run!", "rasters": {"paths": "a.tif"}, "labels": {"path": "l.gpkg"}})
    (sc,) = resolve_scenes(cfg, tmp_path)
    assert sc.name == "my_run"
    assert sc.raster_paths == (tmp_path / "a.tif",)
    assert sc.label_path == tmp_path / "l.gpkg"


def test_scene_list_inherits_shared_settings_and_survives_a_dump(tmp_path):
    from pipeline.config import dump_config

    raw = {
        **BASE,
        "rasters": {"band_names": ["b", "g", "r", "n"], "nodata": 0},
        "labels": {"field": "cls", "on_unknown": "drop"},
        "scenes": [
            {"name": "t1", "rasters": "a.tif", "labels": "a.gpkg"},
            {
                "name": "t2",
                "rasters": {"paths": ["b.tif"], "nodata": 5},
                "labels": {"path": "b.gpkg", "on_unknown": "error"},
            },
            {"name": "t3", "rasters": ["c.tif"]},
        ],
    }
    cfg = parse_config(raw)
    t1, t2, t3 = cfg.scenes
    assert t1.rasters.band_names == ["b", "g", "r", "n"] and t1.rasters.nodata == 0
    assert t1.labels.field == "cls" and t1.labels.on_unknown == "drop"
    assert t2.rasters.nodata == 5 and t2.labels.on_unknown == "error"  # a scene's own keys win
    assert t3.labels is None
    again = parse_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg
    scenes = resolve_scenes(cfg, tmp_path)
    assert [s.has_labels for s in scenes] == [True, True, False]


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"scenes": [{"name": "a", "rasters": "x.tif"}, {"name": "a", "rasters": "y.tif", "labels": "l.tif"}]},
            "duplicate scene name 'a'",
        ),
        ({"scenes": [{"name": "a b", "rasters": "x.tif", "labels": "l.tif"}]}, r"scenes\.0\.name: scene name 'a b'"),
        (
            {"rasters": {"paths": "x.tif"}, "scenes": [{"name": "a", "rasters": "x.tif", "labels": "l.tif"}]},
            "rasters.paths: with 'scenes'",
        ),
        ({"scenes": [{"name": "a", "rasters": "x.tif"}]}, "no scene has labels"),
        ({"scenes": {"rasters": "*.tif", "label": "{name}.tif"}}, r"unknown key 'scenes\.label'"),
        (
            {"rasters": {"paths": ["a.tif", "b.tif"], "dates": ["2019-06-01"]}, "labels": {"path": "l.tif"}},
            "1 dates given for 2 paths",
        ),
        ({"rasters": {"paths": "a.tif"}}, "missing required key 'labels'"),
    ],
)
def test_config_errors_name_the_key(raw, message):
    with pytest.raises(InputError, match=message):
        parse_config({**BASE, **raw}, "c.yaml")


def test_yaml_dates_stay_the_strings_written(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "rasters: {paths: [a.tif, b.tif], dates: [2019-06-01, 2019-07-01]}\nlabels: {path: l.tif}\n"
        + yaml.safe_dump({"classes": CLASSES})
    )
    cfg, _ = load_config(p)
    assert cfg.rasters.dates == ["2019-06-01", "2019-07-01"]


def test_glob_form_names_scenes_after_files_and_finds_their_labels(tmp_path):
    make_tiles(tmp_path, 3, size=16)
    (tmp_path / "labels" / "tile_02.tif").unlink()  # a tile without labels is mapped only
    cfg = parse_config(
        {**BASE, "rasters": {"nodata": 0}, "scenes": {"rasters": "images/*.tif", "labels": "labels/{name}.tif"}}
    )
    scenes = resolve_scenes(cfg, tmp_path)
    assert [s.name for s in scenes] == ["tile_00", "tile_01", "tile_02"]
    assert [s.has_labels for s in scenes] == [True, True, False]
    assert scenes[0].label_path == tmp_path / "labels" / "tile_00.tif"
    assert scenes[0].rasters.nodata == 0
    bad = parse_config({**BASE, "scenes": {"rasters": "nothing/*.tif"}})
    with pytest.raises(InputError, match="no file matches"):
        resolve_scenes(bad, tmp_path)


# ----------------------------------------------------------------------------- dates
def _two_dates(tmp_path, shift_cols: int = 0, crs: str = "EPSG:32633"):
    rng = np.random.default_rng(1)
    a = rng.integers(1, 1000, size=(3, 20, 30)).astype(np.uint16)
    b = rng.integers(1, 1000, size=(3, 20, 30)).astype(np.uint16)
    pa = write_raster(tmp_path / "d1.tif", a, nodata=0, descriptions=["B02", "B03", "B04"])
    pb = write_raster(
        tmp_path / "d2.tif",
        b,
        nodata=0,
        descriptions=["B02", "B03", "B04"],
        origin=(500000.0 + 10.0 * shift_cols, 4000000.0),
        crs=crs,
    )
    return pa, pb, a, b


def test_dates_stack_multiband_files_with_date_band_names(tmp_path):
    pa, pb, a, b = _two_dates(tmp_path)
    with RasterStack.open([pa, pb], dates=["2019-06-01", "2019-07-01"], bands=["B04", "B02"]) as st:
        assert st.band_names == ["2019-06-01:B04", "2019-06-01:B02", "2019-07-01:B04", "2019-07-01:B02"]
        arr = st.read(rasterio.windows.Window(0, 0, 30, 20))
    np.testing.assert_array_equal(arr, np.stack([a[2], a[0], b[2], b[0]]).astype(np.float32))


def test_dates_on_another_grid_are_warped_onto_the_first_with_a_warning(tmp_path):
    pa, pb, a, b = _two_dates(tmp_path, shift_cols=5)  # second date starts 5 pixels further east
    with pytest.warns(RasterAlignmentWarning, match=r"1 file\(s\) not on the grid of .*d1.tif: warped onto its grid"):
        st = RasterStack.open([pa, pb], dates=["t0", "t1"])
    with st:
        arr = st.read(rasterio.windows.Window(0, 0, 30, 20))
    # Column c of the first grid is column c - 5 of the second file; west of it there is no data.
    assert np.isnan(arr[3:, :, :5]).all()
    np.testing.assert_array_equal(arr[3:, :, 5:], b[:, :, :25].astype(np.float32))
    np.testing.assert_array_equal(arr[:3], a.astype(np.float32))


def test_band_files_in_different_crss_need_align_to(tmp_path):
    pa = write_raster(tmp_path / "b1.tif", np.ones((10, 10), np.uint8))
    pb = write_raster(tmp_path / "b2.tif", np.ones((10, 10), np.uint8), crs="EPSG:32634")
    with pytest.raises(InputError, match=r"b2.tif: CRS EPSG:32634 differs from .*b1.tif.*rasters.align_to"):
        RasterStack.open([pa, pb])
    with pytest.warns(RasterAlignmentWarning, match="b2.tif"):
        with RasterStack.open([pa, pb], align_to=pa) as st:
            assert st.count == 2 and st.alignment["rule"] == "align_to"


def test_multiband_list_without_dates_points_to_dates(tmp_path):
    pa, pb, _, _ = _two_dates(tmp_path)
    with pytest.raises(InputError, match="give rasters.dates"):
        RasterStack.open([pa, pb])


# ----------------------------------------------------------------------------- scene checks
def test_scenes_must_share_band_layout_and_pixel_size(tmp_path):
    tiles = make_tiles(tmp_path, 2, size=16)
    write_raster(tmp_path / "three.tif", np.ones((3, 16, 16), np.uint16), descriptions=["blue", "green", "red"])
    write_raster(
        tmp_path / "coarse.tif", np.ones((4, 16, 16), np.uint16), res=20.0, descriptions=["blue", "green", "red", "nir"]
    )
    cfg = parse_config(tiles_config(tiles))
    assert set(check_scenes(resolve_scenes(cfg, tmp_path))) == {"tile_00", "tile_01"}
    for other, msg in (("three.tif", "differ from scene 'tile_00'"), ("coarse.tif", "pixel size 20 x 20")):
        raw = tiles_config(tiles)
        raw["scenes"][1]["rasters"]["paths"] = [str(tmp_path / other)]
        with pytest.raises(InputError, match=msg):
            check_scenes(resolve_scenes(parse_config(raw), tmp_path))


# ----------------------------------------------------------------------------- runs
def _run(cfg: dict, tmp_path: Path, run_id: str = "r"):
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_pipeline

    p = tmp_path / f"{run_id}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    c, base = load_config(p)
    ctx = init_run_dir(c, base, out=tmp_path / "runs", run_id=run_id, progress=False)
    return run_pipeline(ctx)


@pytest.fixture(scope="module")
def nine_tiles(tmp_path_factory):
    """Nine 32 x 32 tiles (the last in another UTM zone) run with the decision tree and blocks."""
    tmp_path = tmp_path_factory.mktemp("nine")
    tiles = make_tiles(tmp_path / "data", 9, size=32, label_step=2, other_crs={8: "EPSG:32632"})
    run = _run(tiles_config(tiles, split={"strategy": "blocks"}), tmp_path)
    return tmp_path, tiles, run


def test_nine_tiles_in_two_crs_run_scene_by_scene(nine_tiles):
    tmp_path, tiles, run = nine_tiles
    samples = pd.read_parquet(run / "samples.parquet")
    assert pd.api.types.is_string_dtype(samples["scene"]) and list(samples["scene"].unique()) == [
        t["name"] for t in tiles
    ]
    assert samples.groupby(["scene", "group"]).ngroups >= 9  # groups are numbered within their scene
    # Every patch comes from its own scene: the centre pixel equals that scene's pixel.
    patches = np.load(run / "patches.npy", mmap_mode="r")
    for i in np.random.default_rng(0).choice(len(samples), 40, replace=False):
        s = samples.iloc[i]
        with rasterio.open(tmp_path / "data" / "images" / f"{s['scene']}.tif") as ds:
            px = ds.read(window=rasterio.windows.Window(int(s["col"]), int(s["row"]), 1, 1))[:, 0, 0]
        np.testing.assert_array_equal(patches[i][:, 1, 1], px.astype(np.float32))
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["scenes"]) == {t["name"] for t in tiles}
    assert m["split"]["audit_across_scenes"]["crs_zones"] == 2
    # One map per scene on that scene's own grid, classes matching the synthetic truth.
    for t in tiles:
        with rasterio.open(run / "maps" / t["name"] / "decision_tree.tif") as mp, rasterio.open(t["image"]) as im:
            assert (mp.crs, mp.transform, mp.shape) == (im.crs, im.transform, im.shape)
            rows, cols = np.mgrid[0:32, 0:32]
            xs, ys = rasterio.transform.xy(mp.transform, rows.ravel(), cols.ravel())
            truth = tile_classes(np.asarray(xs), np.asarray(ys)).reshape(32, 32)
            assert np.mean(mp.read(1) == truth) > 0.9
    assert not (run / "maps" / "decision_tree.tif").exists()
    _outputs_in_one_crs(run, tiles, samples)
    _split_map_in_first_crs(tiles, samples)
    per_scene = m["scenes"]["tile_00"]["models"]["decision_tree"]
    ev = pd.read_parquet(run / "eval" / "decision_tree.parquet")
    sel = ev[samples["scene"].to_numpy()[ev["sample"].to_numpy()] == "tile_00"]
    assert per_scene["test_samples"] == len(sel)
    if len(sel):
        assert per_scene["overall_accuracy"] == pytest.approx(float(np.mean(sel["y_true"] == sel["y_pred"])))


def test_map_command_writes_one_map_per_input_from_a_glob(nine_tiles, tmp_path):
    from pipeline.cli.main import main

    data, tiles, run = nine_tiles
    out = tmp_path / "maps"
    rc = main(
        [
            "map",
            "--model",
            str(run / "models" / "decision_tree.skops"),
            "--raster",
            str(data / "data" / "images" / "tile_0[0-4].tif"),
            str(data / "data" / "images" / "tile_08.tif"),
            "--out",
            str(out),
            "--confidence",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    written = sorted(p.name for p in out.glob("*.tif"))
    want = [f"tile_0{i}.tif" for i in (0, 1, 2, 3, 4, 8)]
    assert written == sorted(want + [w.replace(".tif", "_confidence.tif") for w in want])
    for name in want:  # the same model on the same scene gives the run's own map
        with rasterio.open(out / name) as a, rasterio.open(run / "maps" / name[:-4] / "decision_tree.tif") as b:
            assert (a.crs, a.transform) == (b.crs, b.transform)
            np.testing.assert_array_equal(a.read(1), b.read(1))


def test_map_command_several_inputs_need_a_folder(nine_tiles, tmp_path, capsys):
    from pipeline.cli.main import main

    data, tiles, run = nine_tiles
    rc = main(
        [
            "map",
            "--model",
            str(run / "models" / "decision_tree.skops"),
            "--raster",
            str(data / "data" / "images" / "tile_0*.tif"),
            "--out",
            str(tmp_path / "one.tif"),
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "9 rasters give 9 maps; name a folder" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tif"))
    rc = main(
        [
            "map",
            "--model",
            str(run / "models" / "decision_tree.skops"),
            "--raster",
            str(tmp_path / "nothing*.tif"),
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert rc == 2 and "no file matches" in capsys.readouterr().err


# ----------------------------------------------------------------------------- shared Sentinel-2 data
S2_CLASSES = [
    {"id": 2, "name": "forest"},
    {"id": 3, "name": "grassland"},
    {"id": 4, "name": "shrubland"},
    {"id": 8, "name": "artificial"},
]


def _s2(shared_data):
    d = shared_data / "sentinel2_eolearn"
    return [str(d / f"s2l1c_ref{i}.tif") for i in range(5)], str(d / "lulc.tif")


def test_sentinel2_five_dates_run_as_one_stack(shared_data, tmp_path):
    paths, lulc = _s2(shared_data)
    dates = [f"t{i}" for i in range(5)]
    cfg = {
        "name": "s2-dates",
        "seed": 7,
        "rasters": {"paths": paths, "dates": dates},
        "labels": {"path": lulc, "on_unknown": "drop"},
        "classes": S2_CLASSES,
        "patch": {"size": 5},
        "models": {"decision_tree": {}},
    }
    run = _run(cfg, tmp_path)
    labels = json.loads((run / "labels.json").read_text())
    assert len(labels["band_names"]) == 65
    assert labels["band_names"][:2] == ["t0:B01", "t0:B02"] and labels["band_names"][-1] == "t4:B12"
    with rasterio.open(paths[3]) as ds:  # the 4th date's bands sit at 39..51 of every patch
        ref = ds.read()
    samples = pd.read_parquet(run / "samples.parquet")
    from pipeline.sampling.patches import open_patches

    patches = open_patches(run / "patches.npy")
    i = len(samples) // 2
    r, c = int(samples.at[i, "row"]), int(samples.at[i, "col"])
    np.testing.assert_allclose(patches[i][39:52, 2, 2], ref[:, r, c])
    with rasterio.open(run / "maps" / "decision_tree.tif") as mp, rasterio.open(paths[0]) as im:
        assert (mp.transform, mp.shape) == (im.transform, im.shape)
    m = json.loads((run / "metrics.json").read_text())
    assert "scenes" not in m and m["models"]["decision_tree"]["overall_accuracy"] is not None


def test_sentinel2_five_dates_run_as_five_scenes_through_the_cli(shared_data, tmp_path):
    from pipeline.cli.main import main

    paths, lulc = _s2(shared_data)
    cfg = {
        "name": "s2-scenes",
        "seed": 7,
        "labels": {"on_unknown": "drop"},
        "scenes": [{"name": f"date{i}", "rasters": p, "labels": lulc} for i, p in enumerate(paths)],
        "classes": S2_CLASSES,
        "patch": {"size": 5},
        "models": {"decision_tree": {}},
    }
    p = tmp_path / "s2.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(p), "--out", str(tmp_path / "runs"), "--run-id", "r", "--no-progress"]) == 0
    run = tmp_path / "runs" / "r"
    samples = pd.read_parquet(run / "samples.parquet")
    assert list(samples["scene"].unique()) == [f"date{i}" for i in range(5)]
    per_scene = samples.groupby("scene").size()
    assert per_scene.nunique() == 1  # one label raster on one grid: the same pixels in every date
    m = json.loads((run / "metrics.json").read_text())
    # Five dates of one place share one CRS, so the audit compares them with each other: the same
    # ground may not be training in one date and test in another.
    audit = m["split"]["audit_across_scenes"]
    assert audit["crs_zones"] == 1 and audit["train_patches_touching_test_pixels"] == 0
    for i in range(5):
        assert (run / "maps" / f"date{i}" / "decision_tree.tif").exists()
        assert m["scenes"][f"date{i}"]["samples"] == int(per_scene[f"date{i}"])


def test_report_shows_each_scene_with_its_accuracy_and_map(nine_tiles):
    _, tiles, run = nine_tiles
    md = (run / "report.md").read_text()
    assert "## Scenes" in md
    m = json.loads((run / "metrics.json").read_text())
    section = md.split("## Scenes", 1)[1].split("\n## ", 1)[0]
    for t in tiles:
        sc = m["scenes"][t["name"]]
        oa = sc["models"]["decision_tree"]["overall_accuracy"]
        cell = "–" if oa is None else f"{oa:.3f} (n={sc['models']['decision_tree']['test_samples']:,d})"
        assert f"| {t['name']} |" in section and cell in section
        assert (run / "report_files" / f"map_{t['name']}_decision_tree.png").is_file()


def test_nine_tiles_with_train_validation_test_file_lists_run_end_to_end(tmp_path):
    """A data set shipped with its split: the lists name scenes or image files (a CSV of image paths)."""
    from pipeline.cli.main import main

    tiles = make_tiles(tmp_path / "data", 9, size=24, label_step=2)
    (tmp_path / "train.csv").write_text("image\n" + "".join(f"{t['image']}\n" for t in tiles[:6]))
    cfg = tiles_config(
        tiles,
        split={
            "strategy": "predefined",
            "files": {
                "train": ["train.csv"],
                "validation": ["tile_06"],
                "test": ["tile_07", "data/images/tile_08.tif"],
            },
        },
    )
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(
        [
            "run",
            str(tmp_path / "c.yaml"),
            "--out",
            str(tmp_path / "runs"),
            "--run-id",
            "r",
            "--no-progress",
            "--engine",
            "local",
        ]
    )
    assert rc == 0
    run = tmp_path / "runs" / "r"
    samples = pd.read_parquet(run / "samples.parquet")
    want = {**{t["name"]: "train" for t in tiles[:6]}, "tile_06": "validation", "tile_07": "test", "tile_08": "test"}
    assert (samples["split"] == samples["scene"].map(want)).all()
    ev = pd.read_parquet(run / "eval" / "decision_tree.parquet")
    assert set(samples["scene"].to_numpy()[ev["sample"].to_numpy()]) == {"tile_07", "tile_08"}
    m = json.loads((run / "metrics.json").read_text())
    assert m["split"]["strategy"] == "predefined"
    assert m["scenes"]["tile_00"]["models"]["decision_tree"]["test_samples"] == 0
    assert m["scenes"]["tile_08"]["models"]["decision_tree"]["test_samples"] == int(
        (samples["scene"] == "tile_08").sum()
    )
    for t in tiles:
        assert (run / "maps" / t["name"] / "decision_tree.tif").is_file()


def test_audit_never_compares_samples_of_different_zones():
    from pipeline.split.audit import audit_split

    # Two samples at the same coordinates: a leak within one CRS, nothing across two.
    xy = np.array([[0.0, 0.0], [0.0, 0.0], [100.0, 0.0]])
    same = audit_split(xy, (10, 10), 3, [0], [1])
    assert same["train_patches_touching_test_pixels"] == 1 and same["min_train_test_distance"] == 0
    apart = audit_split(xy, (10, 10), 3, [0], [1, 2], zones=np.array(["utm32", "utm33", "utm32"]))
    assert apart["train_patches_touching_test_pixels"] == 0 and apart["min_train_test_distance"] == 100


def test_scene_maps_caption_names_no_best_model_when_inconclusive(nine_tiles, tmp_path):
    # The headline of an inconclusive run names no best model; the Scenes caption once still did.
    import shutil

    from pipeline.report.page import write_report

    _, _, run = nine_tiles
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    m = json.loads((copy / "metrics.json").read_text())
    for conclusive in (True, False):
        m["evidence"] = {
            **(m.get("evidence") or {}),
            "conclusive": conclusive,
            "reasons": [] if conclusive else ["only 3 test pixels (at least 30 are needed)"],
        }
        (copy / "metrics.json").write_text(json.dumps(m))
        write_report(copy)
        section = (copy / "report.md").read_text().split("## Scenes", 1)[1].split("\n## ", 1)[0]
        assert ("Maps of the best model (" in section) is conclusive, section
        assert ("the evaluation is inconclusive, so this is not a ranking" in section) is not conclusive


def test_map_cli_with_dates_warns_in_one_line_and_points_to_dates(tmp_path, capfd, caplog):
    # `landcover map` on a date-stack model: the warp of a date on another grid was a raw Python
    # warning (file path, source line); three dates without --dates gave only "name a folder".
    from pipeline.cli.main import main
    from pipeline.models import load_model

    pa, pb, a, b = _two_dates(tmp_path, shift_cols=5)
    lab = np.zeros((20, 30), np.uint8)
    lab[2:8, 2:8], lab[12:18, 2:8], lab[2:8, 12:18], lab[12:18, 12:18] = 1, 2, 1, 2
    write_raster(tmp_path / "lab.tif", lab[None], nodata=0)
    cfg = {
        "name": "d",
        "seed": 0,
        "rasters": {"paths": [str(pa), str(pb)], "dates": ["t0", "t1"]},
        "labels": {"path": str(tmp_path / "lab.tif")},
        "classes": [{"id": 1, "name": "water", "color": "#0000ff"}, {"id": 2, "name": "forest", "color": "#00ff00"}],
        "patch": {"size": 3},
        "split": {"strategy": "random", "random_contrast": False},
        "models": {"decision_tree": {}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert (
        main(
            [
                "run",
                str(tmp_path / "c.yaml"),
                "--out",
                str(tmp_path / "runs"),
                "--run-id",
                "r",
                "--no-progress",
                "--engine",
                "local",
            ]
        )
        == 0
    )
    model = tmp_path / "runs" / "r" / "models" / "decision_tree.skops"
    assert list(load_model(model).meta.band_names)[:1] == ["t0:B02"]
    import warnings

    capfd.readouterr()
    caplog.clear()
    out = tmp_path / "m.tif"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            main(
                [
                    "map",
                    "--model",
                    str(model),
                    "--raster",
                    str(pa),
                    str(pb),
                    "--dates",
                    "t0,t1",
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
    assert not [w for w in caught if issubclass(w.category, RasterAlignmentWarning)]
    assert [r for r in caplog.records if r.levelname == "WARNING" and "not on the grid of" in r.getMessage()]
    assert out.is_file()
    with rasterio.open(out) as m, rasterio.open(tmp_path / "runs" / "r" / "maps" / "decision_tree.tif") as ref:
        assert (m.read(1) == ref.read(1)).all()  # the same stack as in the run
    # In a subprocess: its stderr holds only what the CLI printed (in process, threads left by
    # earlier tests' Dask clusters and Prefect servers may log into the captured stream).

    proc = run_cli(
        "map", "--model", str(model), "--raster", str(pa), str(pb), "--out", str(tmp_path / "x.tif"), "--no-progress"
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "stack them with --dates" in err[0], err


def _outputs_in_one_crs(run, tiles, samples):
    """splits.gpkg and samples.parquet of scenes in two UTM zones are in the first scene's CRS:
    each point is its sample's x/y carried from its own scene's CRS (pyproj, independently), and
    every sample lies in its block and, for test samples, in the buffer zone."""
    import geopandas as gpd
    import pyogrio
    import shapely
    from pyproj import Transformer

    first = rasterio.open(tiles[0]["image"]).crs
    names = {t["name"]: rasterio.open(t["image"]).crs for t in tiles}
    want = np.empty((len(samples), 2))
    for name, c in names.items():
        sel = (samples["scene"] == name).to_numpy()
        tx = Transformer.from_crs(c, first, always_xy=True)
        want[sel] = np.column_stack(tx.transform(samples["x"].to_numpy()[sel], samples["y"].to_numpy()[sel]))
    assert {c.to_string() for c in names.values()} == {"EPSG:32633", "EPSG:32632"}
    for layer in ("blocks", "buffer", "samples"):
        assert pyogrio.read_info(run / "splits.gpkg", layer=layer)["crs"] == first.to_string()
    pts = gpd.read_file(run / "splits.gpkg", layer="samples")
    np.testing.assert_allclose(np.column_stack([pts.geometry.x, pts.geometry.y]), want, atol=1e-6)
    geo = gpd.read_parquet(run / "samples.parquet")
    assert geo.crs == first
    np.testing.assert_allclose(np.column_stack([geo.geometry.x, geo.geometry.y]), want, atol=1e-6)
    np.testing.assert_array_equal(geo[["x", "y"]].to_numpy(), samples[["x", "y"]].to_numpy())  # native stays
    blocks = gpd.read_file(run / "splits.gpkg", layer="blocks").set_index("block")
    # a block names the scene(s) of its samples (the split sees one zone per CRS)
    want_scenes = samples.groupby("block")["scene"].agg(lambda v: ", ".join(sorted(set(v))))
    assert blocks["scene"].to_dict() == want_scenes.loc[blocks.index].to_dict()
    own_block = blocks.geometry.loc[samples["block"].to_numpy()].buffer(1e-6).to_numpy()
    assert shapely.contains(own_block, pts.geometry.to_numpy()).all()
    buf = gpd.read_file(run / "splits.gpkg", layer="buffer")
    test = (samples["split"] == "test").to_numpy()
    assert len(buf) and buf.geometry.iloc[0].buffer(1e-6).contains(pts.geometry[test]).all()


def _split_map_in_first_crs(tiles, samples):
    """The split map of scenes in two UTM zones is drawn in the first scene's CRS, labelled with
    it: its points are the samples carried there by pyproj, and the axes span them, not the
    native coordinates of both zones (axis margins: 5% a side, blocks and buffer)."""
    from matplotlib.collections import PathCollection
    from pyproj import Transformer

    from pipeline.split.make import make_splits
    from pipeline.split.outputs import split_map_figure
    from pipeline.split.settings import SplitConfig

    names = {t["name"]: rasterio.open(t["image"]).crs for t in tiles}
    first = names[tiles[0]["name"]]
    want = np.empty((len(samples), 2))
    for name, c in names.items():
        sel = (samples["scene"] == name).to_numpy()
        tx = Transformer.from_crs(c, first, always_xy=True)
        want[sel] = np.column_stack(tx.transform(samples["x"].to_numpy()[sel], samples["y"].to_numpy()[sel]))
    result = make_splits(samples, SplitConfig(strategy="blocks"), 3, (10.0, 10.0), seed=0)
    assert result.blocks.crs is None and result.buffer
    scene_crs = {n: c.to_string() for n, c in names.items()}
    ax = split_map_figure(samples, result, scene_crs=scene_crs).axes[0]
    assert f"EPSG:{first.to_epsg()}" in ax.get_xlabel() and "(m)" in ax.get_xlabel()
    assert "CRS unknown" not in ax.get_xlabel()
    drawn = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(want, axis=0), atol=1e-6)
    span = want.max(axis=0) - want.min(axis=0)
    for lim, lo, hi, s in zip((ax.get_xlim(), ax.get_ylim()), want.min(axis=0), want.max(axis=0), span):
        assert lim[0] <= lo and lim[1] >= hi and lim[1] - lim[0] < 1.15 * s + 2000.0, (lim, lo, hi)


@pytest.mark.parametrize(
    "case, message",
    [
        ("one image", "split.files: the run has 1 labelled scene(s) ['tiny'] and split.files assigns whole scenes"),
        ("unlisted scene", "split.files: scene(s) 'tile_02' are in no list"),
        (
            "unknown name",
            "split.files.test: 'tile_9' match(es) no scene of the run (scenes: tile_00, tile_01, tile_02)",
        ),
    ],
)
def test_split_files_that_cannot_work_stop_before_any_work(tmp_path, case, message):
    """``split.files`` is checked against the run's scenes before the run directory exists: one
    line naming the key, exit 2, nothing written (it used to fail in prepare, after ingesting)."""
    import subprocess
    import sys

    from tiny_project import make_project

    if case == "one image":
        split = {"strategy": "predefined", "files": {"train": ["a"], "test": ["b"]}}
        cfg_path = make_project(tmp_path / "p", models={"decision_tree": {}}, split=split)
    else:
        tiles = make_tiles(tmp_path / "data", 3, size=16, label_step=2)
        lists = {"train": ["tile_00"], "test": ["tile_01"]}
        if case == "unknown name":  # a typo beside a full listing used to pass unnoticed
            lists = {"train": ["tile_00"], "validation": ["tile_01"], "test": ["tile_02", "tile_9"]}
        cfg_path = tmp_path / "c.yaml"
        cfg_path.write_text(yaml.safe_dump(tiles_config(tiles, split={"strategy": "predefined", "files": lists})))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(cfg_path), "--out", str(tmp_path / "runs")]
        + ["--engine", "local", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()
