"""Windows of one raster as tasks on a real local Dask cluster (two worker processes, one
thread each): every window is classified on some worker, both workers take part, and the
map is identical to a local run (library call and ``landcover map --dask``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.mapping.classify import classify_raster, open_for_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.settings import DecisionTreeConfig
from pipeline.models.trees import DecisionTreeModel

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import REPO, prefect_api  # noqa: E402,F401

distributed = pytest.importorskip("distributed")


@pytest.fixture
def cluster(dask_cluster):
    """The session's two-worker cluster (tests/conftest.py)."""
    return dask_cluster


def _scene(tmp_path):
    rng = np.random.default_rng(5)
    rows, cols = 160, 200
    data = np.empty((3, rows, cols), np.uint16)
    left = np.arange(cols)[None, :] < cols // 2 + rng.integers(-20, 20, size=(rows, 1))
    for b in range(3):
        data[b] = np.where(left, 1000 + 300 * b, 2000 - 200 * b) + rng.integers(0, 400, size=(rows, cols))
    data[:, :7, :9] = 0  # nodata corner
    path = tmp_path / "scene.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=cols,
        height=rows,
        count=3,
        dtype="uint16",
        nodata=0,
        crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 10, 10),
    ) as dst:
        dst.write(data)
        dst.descriptions = ("b1", "b2", "b3")
    X = data.reshape(3, -1).T.astype(np.float32)[::37]
    y = np.where(left.ravel()[::37], 1, 2)
    meta = ModelMeta("decision_tree", ["b1", "b2", "b3"], [1, 2], ["west", "east"], ["#ff0000", "#0000ff"], 1)
    td = TrainingData(X[:, :, None, None], y, np.arange(len(y)), np.zeros((len(y), 2)), meta.band_names)
    model = DecisionTreeModel(DecisionTreeConfig(), meta, seed=0).fit(td)
    model_path = model.save(tmp_path / "tree.skops")
    return path, model, model_path


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


def test_windows_fan_out_over_both_workers_with_identical_output(tmp_path, cluster):
    _, client = cluster
    path, model, _ = _scene(tmp_path)
    with open_for_model(path, model.meta.band_names) as stack:
        local = classify_raster(
            model, stack, tmp_path / "local.tif", tmp_path / "local_conf.tif", window_size=32, progress=False
        )
        remote = classify_raster(
            model,
            stack,
            tmp_path / "dask.tif",
            tmp_path / "dask_conf.tif",
            window_size=32,
            progress=False,
            client=client,
        )
    assert local["workers"] == {}
    n_windows = -(-160 // 32) * -(-200 // 32)
    assert sum(remote["workers"].values()) == n_windows
    assert set(remote["workers"]) == set(client.nthreads())  # both workers classified windows
    (a, pa), (b, pb) = _read(tmp_path / "local.tif"), _read(tmp_path / "dask.tif")
    np.testing.assert_array_equal(a, b)
    assert (a == 255).sum() == 7 * 9 and set(np.unique(a)) == {1, 2, 255}
    np.testing.assert_array_equal(_read(tmp_path / "local_conf.tif")[0], _read(tmp_path / "dask_conf.tif")[0])
    assert pa["transform"] == pb["transform"] and pa["crs"] == pb["crs"]


def test_cli_map_dask(tmp_path, cluster, capsys):
    from pipeline.cli.main import main

    c, _ = cluster
    path, _, model_path = _scene(tmp_path)
    assert (
        main(
            [
                "map",
                "--model",
                str(model_path),
                "--raster",
                str(path),
                "--out",
                str(tmp_path / "l.tif"),
                "--window-size",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "map",
                "--model",
                str(model_path),
                "--raster",
                str(path),
                "--out",
                str(tmp_path / "d.tif"),
                "--window-size",
                "32",
                "--no-progress",
                "--dask",
                c.scheduler_address,
            ]
        )
        == 0
    )
    assert "windows on 2 Dask worker(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(_read(tmp_path / "l.tif")[0], _read(tmp_path / "d.tif")[0])


@pytest.mark.prefect
def test_serve_maps_a_batch_in_parallel_on_both_workers(tmp_path, prefect_api, cluster):
    """``landcover serve --once --dask``: the scenes of one batch are tasks on both workers, and
    their maps equal a local mapping of the same rasters."""
    import json
    import shutil

    from pipeline.cli.main import main

    path, model, model_path = _scene(tmp_path)
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    names = [f"tile{i}" for i in range(4)]
    for n in names:
        shutil.copy(path, inbox / f"{n}.tif")
    with open_for_model(path, model.meta.band_names) as stack:
        classify_raster(model, stack, tmp_path / "local.tif", window_size=512, progress=False)
    c, _ = cluster  # started after the Prefect test server, so that its workers report to it
    rc = main(
        [
            "serve",
            str(REPO / "configs" / "demo.yaml"),
            "--once",
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--model",
            str(model_path),
            "--runs",  # serve loads models only from its runs directory
            str(model_path.parent),
            "--settle",
            "0",
            "--dask",
            c.scheduler_address,
        ]
    )
    assert rc == 0
    # each scene's folder is its name plus a hash of the input (never shared between inputs)
    dirs = {n: next(outbox.glob(f"{n}-*")) for n in names}
    reports = [json.loads((d / f"{d.name}.json").read_text()) for d in dirs.values()]
    assert len({r["mapped_by"]["pid"] for r in reports}) == 2  # scenes ran on both worker processes
    local = _read(tmp_path / "local.tif")[0]
    for n in names:
        np.testing.assert_array_equal(_read(dirs[n] / f"{dirs[n].name}.tif")[0], local)


@pytest.mark.prefect
def test_serve_maps_every_scene_of_16_on_two_workers_every_time(tmp_path, prefect_api, cluster):
    """The race behind ``KeyError: 'DecisionTreeModel-<hash>'``: every scene of a batch scatters the
    same model; with a content-hashed key, one scene's release could drop the data another scene
    on the cluster still used. Sixteen scenes on two workers, three cycles: every scene is mapped,
    every time, identical to a local mapping."""
    import json
    import shutil

    from pipeline.cli.main import main

    path, model, model_path = _scene(tmp_path)
    with open_for_model(path, model.meta.band_names) as stack:
        classify_raster(model, stack, tmp_path / "local.tif", window_size=512, progress=False)
    local = _read(tmp_path / "local.tif")[0]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = [f"tile{i:02d}" for i in range(16)]
    for n in names:
        shutil.copy(path, inbox / f"{n}.tif")
    c, _ = cluster
    for cycle in range(3):
        outbox = tmp_path / f"outbox{cycle}"
        args = ["serve", str(REPO / "configs" / "demo.yaml"), "--once", "--inbox", str(inbox), "--outbox", str(outbox)]
        args += ["--model", str(model_path), "--runs", str(model_path.parent), "--settle", "0", "--no-progress"]
        rc = main([*args, "--dask", c.scheduler_address])
        failed = [json.loads(p.read_text())["error"] for p in outbox.glob("*/*.failed.json")]
        assert rc == 0 and not failed, (cycle, failed)
        for n in names:
            (d,) = outbox.glob(f"{n}-*")
            np.testing.assert_array_equal(_read(d / f"{d.name}.tif")[0], local)


def test_each_mapping_scatters_its_model_under_a_key_of_its_own(tmp_path, cluster, monkeypatch):
    """The cause of the serve --dask race: two mappings of the same model (two scenes of a batch)
    must not share the scattered model's key, or the first to finish releases it while the other
    still uses it. Recorded on the real scatter of a real cluster."""
    _, client = cluster
    path, model, _ = _scene(tmp_path)
    keys: list[str] = []
    real = type(client).scatter

    def recording(self, *a, **k):
        fut = real(self, *a, **k)
        keys.append(fut.key)
        return fut

    monkeypatch.setattr(type(client), "scatter", recording)
    with open_for_model(path, model.meta.band_names) as stack:
        for i in range(2):
            classify_raster(model, stack, tmp_path / f"m{i}.tif", window_size=64, progress=False, client=client)
    assert len(keys) == 2 and keys[0] != keys[1], keys
    np.testing.assert_array_equal(_read(tmp_path / "m0.tif")[0], _read(tmp_path / "m1.tif")[0])
