"""``landcover map`` checks the input's values against the model's training pixels (issue #16 item 6)."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).parent))
from unseen_scenes import class_image, polygons_on_cells, spectra, write_config, write_raster

TR = from_origin(500000.0, 4000000.0, 30.0, 30.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from pipeline.cli.main import main

    folder = tmp_path_factory.mktemp("vr")
    cls = class_image(48, 48)
    data = np.clip(spectra(cls), 1, None).astype(np.float32)
    write_raster(folder / "scene.tif", data, TR, "EPSG:32633")
    polygons_on_cells(cls, TR, "EPSG:32633").to_file(folder / "labels.gpkg")
    cfg = write_config(folder / "config.yaml", ["scene.tif"], "labels.gpkg", split={"random_contrast": False})
    assert (
        main(["run", str(cfg), "--out", str(folder / "runs"), "--run-id", "r", "--no-progress", "--engine", "local"])
        == 0
    )
    return folder, data, folder / "runs" / "r"


def _map(model, raster, out, *extra):
    from pipeline.cli.main import main

    return main(["map", "--model", str(model), "--raster", str(raster), "--out", str(out), "--no-progress", *extra])


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "train" in r.getMessage()]


def test_the_model_records_the_training_percentiles(trained):
    from pipeline.models import load_model

    _, data, run = trained
    vr = load_model(run / "models" / "decision_tree.skops").meta.value_range
    assert vr["dtypes"] == ["float32"] * 3
    # training pixels are labelled pixels of the scene: their medians lie within the scene's own range
    for b in range(3):
        lo, hi = np.percentile(data[b], [0, 100])
        assert lo <= vr["p1"][b] < vr["p50"][b] < vr["p99"][b] <= hi


def test_the_training_raster_maps_without_warning(trained, tmp_path, caplog):
    folder, _, run = trained
    caplog.set_level(logging.INFO)
    out = tmp_path / "same.tif"
    assert _map(run / "models" / "decision_tree.skops", folder / "scene.tif", out) == 0
    assert _warnings(caplog) == []
    with rasterio.open(out) as a, rasterio.open(run / "maps" / "decision_tree.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_a_raster_scaled_by_100_warns_and_strict_stops(trained, tmp_path, caplog, capsys):
    folder, data, run = trained
    scaled = write_raster(tmp_path / "scaled.tif", data * 100, TR, "EPSG:32633")
    caplog.set_level(logging.INFO)
    assert _map(run / "models" / "decision_tree.skops", scaled, tmp_path / "a.tif") == 0
    (line,) = _warnings(caplog)
    assert line.startswith(str(scaled)) and "100x larger" in line
    from pipeline.models import load_model

    bands = load_model(run / "models" / "decision_tree.skops").meta.band_names
    assert f"band(s) {', '.join(bands)} outside" in line  # names the bands
    assert "data type" not in line  # same dtype: only the range is off
    capsys.readouterr()
    out = tmp_path / "strict.tif"
    assert _map(run / "models" / "decision_tree.skops", scaled, out, "--strict") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "100x larger" in err[0] and str(scaled) in err[0]
    assert not out.exists() and not list(tmp_path.glob("strict*"))
    # several inputs: the scaled one stops the command before the good one is mapped
    folder_out = tmp_path / "maps"
    folder_out.mkdir()
    from pipeline.cli.main import main

    assert (
        main(
            [
                "map",
                "--model",
                str(run / "models" / "decision_tree.skops"),
                "--raster",
                str(folder / "scene.tif"),
                str(scaled),
                "--out",
                str(folder_out),
                "--strict",
                "--no-progress",
            ]
        )
        == 2
    )
    assert list(folder_out.iterdir()) == []


def test_a_different_dtype_warns(trained, tmp_path, caplog):
    folder, data, run = trained
    as_int = write_raster(tmp_path / "int.tif", np.round(data).astype(np.uint16), TR, "EPSG:32633")
    caplog.set_level(logging.INFO)
    assert _map(run / "models" / "decision_tree.skops", as_int, tmp_path / "b.tif") == 0
    (line,) = _warnings(caplog)
    assert "data type uint16, the model was trained on float32" in line and "larger" not in line


def test_reflectance_0_1_against_a_model_of_0_10000(tmp_path):
    """The check itself on float reflectance against a uint16 0-10000 reference: range and dtype."""
    from pipeline.inputs.value_range import training_value_range, value_range_problem

    rng = np.random.default_rng(0)
    dn = rng.uniform(200, 6000, (5000, 4))
    ref = training_value_range(dn, ["uint16"] * 4)
    np.testing.assert_allclose(ref["p50"], np.percentile(dn, 50, axis=0))
    assert value_range_problem(dn, ["uint16"] * 4, list("abcd"), ref) is None
    msg = value_range_problem(dn / 10000, ["float32"] * 4, list("abcd"), ref)
    assert "10000x smaller" in msg and "a, b, c, d" in msg and "data type float32" in msg
    # one band of four off is no majority, and nothing else differs
    one = dn.copy()
    one[:, 0] *= 100
    assert value_range_problem(one, ["uint16"] * 4, list("abcd"), ref) is None
    # a clear date against a hazy training date (narrow range, 3x darker) is not other units
    hazy = training_value_range(rng.normal(0.3, 0.02, (5000, 4)), ["float32"] * 4)
    assert value_range_problem(rng.normal(0.1, 0.03, (5000, 4)), ["float32"] * 4, list("abcd"), hazy) is None
    assert "100x smaller" in value_range_problem(
        rng.normal(0.003, 0.0003, (5000, 4)), ["float32"] * 4, list("abcd"), hazy
    )
    # values at or below 0 (SAR backscatter in dB) are compared on the widened range: x100 is off
    db = rng.uniform(-25, -5, (5000, 2))
    ref_db = training_value_range(db, ["float32"] * 2)
    assert value_range_problem(db + 3, ["float32"] * 2, ["vv", "vh"], ref_db) is None
    assert "100x larger" in value_range_problem(db * 100, ["float32"] * 2, ["vv", "vh"], ref_db)


def test_an_old_model_without_the_field_still_maps(trained, tmp_path, caplog):
    from pipeline.models import load_model

    folder, data, run = trained
    model = load_model(run / "models" / "decision_tree.skops")
    model.meta = dataclasses.replace(model.meta, value_range=None)
    old = model.save(tmp_path / "old.skops")
    assert load_model(old).meta.value_range is None
    scaled = write_raster(tmp_path / "scaled.tif", data * 100, TR, "EPSG:32633")
    caplog.set_level(logging.INFO)
    assert _map(old, scaled, tmp_path / "c.tif", "--strict") == 0
    assert _warnings(caplog) == []


def test_a_deep_model_file_keeps_the_value_range(tmp_path):
    """``.pt`` files are loaded with ``weights_only``: the value range must be plain types (None included)."""
    import torch
    from test_deep import make_model, separable

    from pipeline.inputs.value_range import training_value_range
    from pipeline.models import load_model

    m = make_model("cnn", 5, epochs=1)
    data = separable(60, 5, 0)
    vals = data.centre().astype(np.float64)
    vals[:, 1] = np.nan  # a band without a valid training value keeps None percentiles
    m.meta = dataclasses.replace(m.meta, value_range=training_value_range(vals, ["uint16"] * vals.shape[1]))
    m.fit(data)
    path = m.save(tmp_path / "cnn.pt")
    assert torch.load(path, weights_only=True)["meta"]["value_range"]["p50"][1] is None
    assert load_model(path).meta.value_range == m.meta.value_range


def test_serve_records_the_warning_in_the_scene_report(trained, tmp_path, caplog):
    import json

    from pipeline.runner.batch import map_one_scene

    folder, data, run = trained
    caplog.set_level(logging.INFO)
    model = str(run / "models" / "decision_tree.skops")
    map_one_scene({"path": str(folder / "scene.tif"), "name": "same"}, model, str(tmp_path), 64, 1)
    scaled = write_raster(tmp_path / "scaled.tif", data * 100, TR, "EPSG:32633")
    map_one_scene({"path": str(scaled), "name": "scaled"}, model, str(tmp_path), 64, 1)
    assert json.loads((tmp_path / "same" / "same.json").read_text())["value_range_warning"] is None
    line = json.loads((tmp_path / "scaled" / "scaled.json").read_text())["value_range_warning"]
    assert line.startswith(str(scaled)) and "100x larger" in line
    assert _warnings(caplog) == [line]
