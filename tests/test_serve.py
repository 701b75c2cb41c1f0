"""``landcover serve --once``: one good and one corrupt scene in an inbox; nothing is mapped twice."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import REPO, prefect_api  # noqa: E402,F401

pytestmark = pytest.mark.prefect


def _model(path: Path, bands: list[str]) -> Path:
    """A decision tree that tells the synthetic scene's two halves apart (classes 1 and 2)."""
    from pipeline.models import build_model
    from pipeline.models.base import ModelMeta, TrainingData
    from pipeline.models.settings import DecisionTreeConfig

    rng = np.random.default_rng(0)
    y = np.repeat([1, 2], 100)
    centre = np.where(y[:, None] == 1, [1000, 1300, 1600], [3000, 2800, 2600]).astype(np.float32)
    patches = (centre[:, :, None, None] + rng.normal(size=(200, 3, 3, 3)) * 20).astype(np.float32)
    data = TrainingData(
        patches, y.astype(np.int64), rng.integers(0, 5, 200).astype(np.int64), rng.normal(size=(200, 2)), bands
    )
    meta = ModelMeta(
        model="decision_tree",
        band_names=bands,
        class_ids=[1, 2],
        class_names=["left", "right"],
        class_colors=["#ff0000", "#0000ff"],
        patch_size=3,
    )
    m = build_model("decision_tree", DecisionTreeConfig(), meta, seed=0)
    m.fit(data, None)
    m.save(path)
    return path


def test_serve_once_maps_good_reports_corrupt_and_skips_seen(prefect_api, synthetic_scene, tmp_path):
    from pipeline.cli.main import main

    scene, data = synthetic_scene
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    shutil.copy(scene, inbox / "good scene.tif")
    (inbox / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00garbage" * 200)
    (inbox / ".partial.tif").write_bytes(b"still copying")  # hidden: ignored
    (inbox / "notes.txt").write_text("not a raster")
    model = _model(tmp_path / "runs" / "dt.skops", ["b1", "b2", "b3"])
    args = [
        "serve",
        str(REPO / "configs" / "demo.yaml"),
        "--once",
        "--inbox",
        str(inbox),
        "--outbox",
        str(outbox),
        "--model",
        str(model),
        "--runs",
        str(tmp_path / "runs"),
        "--settle",
        "0",
    ]

    assert main(args) == 3  # one scene failed: reported, and the cycle still mapped the other
    (gdir,) = outbox.glob("good_scene-*")  # a readable name plus a hash of the input: never shared
    good = gdir / f"{gdir.name}.tif"
    with rasterio.open(good) as src:
        cls = src.read(1)
    assert cls.shape == data.shape[1:]
    assert (cls[10:, 5:35] == 1).mean() > 0.95 and (cls[10:, 45:] == 2).mean() > 0.95
    assert (cls[:5, :5] == 255).all()  # nodata corner
    rep = json.loads((gdir / f"{gdir.name}.json").read_text())
    assert rep["model_name"] == "decision_tree" and (gdir / f"{gdir.name}.md").exists()
    # the per-scene Markdown rounds as the run report does; the map carries its class table
    md_rows = [
        ln
        for ln in (gdir / f"{gdir.name}.md").read_text().splitlines()
        if ln.startswith("| left") or ln.startswith("| right")
    ]
    assert len(md_rows) == 2
    for ln, name in zip(md_rows, ("left", "right")):
        _, cls, px, ha, share, _ = ln.split("|")
        a = rep["class_areas"][name]
        assert (cls.strip(), px.strip(), ha.strip(), share.strip()) == (
            name,
            f"{a['pixels']:,d}",
            f"{a['area_ha']:,.1f}",
            f"{100 * a['fraction']:.1f}%",
        )
    assert (gdir / f"{gdir.name}.qml").exists() and (gdir / f"{gdir.name}.tif.aux.xml").exists()
    # the config's outputs: section (demo.yaml: 0.5 ha MMU, polygons) applies to serve too; areas name their map
    assert rep["mmu"]["mmu"] == "0.5 ha" and rep["class_areas_map"].endswith(f"{gdir.name}_mmu.tif")
    assert (gdir / f"{gdir.name}_mmu.tif").is_file() and rep["polygons"]["polygons"] >= 2
    # every mapped scene is an Item of the outbox's STAC catalog, valid offline
    from pipeline.mapping.stac import validate_item

    cat = json.loads((outbox / "catalog.json").read_text())
    assert [lk["href"] for lk in cat["links"] if lk["rel"] == "item"] == [f"./{gdir.name}/{gdir.name}.stac.json"]
    item = json.loads((gdir / f"{gdir.name}.stac.json").read_text())
    validate_item(item)
    assert item["id"] == gdir.name and item["assets"]["classes_mmu"]["href"] == f"./{gdir.name}_mmu.tif"
    (cdir,) = outbox.glob("corrupt-*")
    failed = json.loads((cdir / f"{cdir.name}.failed.json").read_text())
    assert "corrupt.tif" in failed["error"]
    state = json.loads((outbox / ".serve-state.json").read_text())["processed"]
    assert sorted(v["status"] for v in state.values()) == ["failed", "mapped"]
    cycles = sorted((outbox / "cycles").glob("*.json"))
    assert len(cycles) == 1
    c1 = json.loads(cycles[0].read_text())
    assert len(c1["mapped"]) == 1 and len(c1["failed"]) == 1

    # second cycle: nothing new, nothing mapped twice
    mtime = good.stat().st_mtime_ns
    assert main(args) == 0
    # a cycle that did nothing leaves no report (a schedule every minute would write two files a minute)
    assert sorted((outbox / "cycles").glob("*")) == sorted(cycles + [c.with_suffix(".md") for c in cycles])
    assert good.stat().st_mtime_ns == mtime


def test_serve_warns_about_a_scene_in_other_units_and_strict_fails_it(prefect_api, synthetic_scene, tmp_path):
    """A scene whose values are 100x smaller than the training pixels (reflectance where the model
    learnt digital numbers) is mapped with the warning in its JSON and Markdown reports; with
    ``--strict`` it fails (nothing of it written) and the good scene is still mapped."""
    import dataclasses

    from conftest import write_raster

    from pipeline.cli.main import main
    from pipeline.inputs.value_range import training_value_range
    from pipeline.models import load_model

    scene, data = synthetic_scene
    path = _model(tmp_path / "runs" / "dt.skops", ["b1", "b2", "b3"])
    model = load_model(path)
    pixels = data.reshape(3, -1).T[data[0].ravel() > 0]
    model.meta = dataclasses.replace(model.meta, value_range=training_value_range(pixels, ["uint16"] * 3))
    model.save(path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(scene, inbox / "good.tif")
    write_raster(inbox / "scaled.tif", data.astype(np.float32) / 100, nodata=0, descriptions=["b1", "b2", "b3"])
    for strict in (False, True):
        outbox = tmp_path / f"outbox-{strict}"
        args = ["serve", str(REPO / "configs" / "demo.yaml"), "--once", "--inbox", str(inbox)]
        args += ["--outbox", str(outbox), "--model", str(path), "--runs", str(tmp_path / "runs"), "--settle", "0"]
        assert main(args + (["--strict"] if strict else [])) == (3 if strict else 0)
        (sdir,) = outbox.glob("scaled-*")
        (gdir,) = outbox.glob("good-*")
        assert (gdir / f"{gdir.name}.tif").is_file()
        assert json.loads((gdir / f"{gdir.name}.json").read_text())["value_range_warning"] is None
        if strict:
            failed = json.loads((sdir / f"{sdir.name}.failed.json").read_text())
            assert "scaled.tif" in failed["error"] and "smaller" in failed["error"]
            assert not list(sdir.glob("*.tif"))
        else:
            warning = json.loads((sdir / f"{sdir.name}.json").read_text())["value_range_warning"]
            assert "scaled.tif" in warning and "smaller" in warning
            md = (sdir / f"{sdir.name}.md").read_text()
            assert "**Warning**" in md and "smaller" in md
            assert (sdir / f"{sdir.name}.tif").is_file()
            # the cycle report an operator reads says so too, for that scene only
            (cycle,) = (outbox / "cycles").glob("*.json")
            by_input = {Path(m["input"]).name: m for m in json.loads(cycle.read_text())["mapped"]}
            assert by_input["good.tif"]["warning"] is None and "smaller" in by_input["scaled.tif"]["warning"]
            cycle_md = cycle.with_suffix(".md").read_text()
            assert "2 mapped (1 with a warning)" in cycle_md
            (warned_line,) = [ln for ln in cycle_md.splitlines() if "with a warning" in ln and ln.startswith("- ")]
            assert "scaled.tif" in warned_line and "smaller" in warned_line


def _damaged_copy(src: Path, dst: Path) -> Path:
    """``src`` rewritten as a tiled DEFLATE GeoTIFF with one tile's bytes overwritten: the file
    opens, that tile does not decode (a damaged download, not a transient error)."""
    tiled = dst.with_name(".tiled.tif")
    with rasterio.open(src) as s:
        prof = {**s.profile, "tiled": True, "blockxsize": 16, "blockysize": 16, "compress": "deflate"}
        with rasterio.open(tiled, "w", **prof) as d:
            d.write(s.read())
            d.descriptions = s.descriptions
    with rasterio.open(tiled) as d:
        offset = int(d.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    data = bytearray(tiled.read_bytes())
    data[offset : offset + 300] = b"\xff" * 300
    dst.write_bytes(bytes(data))
    tiled.unlink()
    return dst


def test_a_cycle_with_a_failed_scene_is_a_failed_flow_run_and_damaged_input_is_not_retried(
    prefect_api, synthetic_scene, tmp_path, capsys
):
    """The batch-map flow run of a cycle whose scene failed ends Failed (as the UI and alerts see
    it) and --once exits 3; a damaged file fails once, with GDAL's own cause, and is not retried
    as if the error were transient; an I/O error still would be."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, TaskRunFilter, TaskRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from pipeline.cli.main import main

    scene, _ = synthetic_scene
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    shutil.copy(scene, inbox / "good.tif")
    _damaged_copy(scene, inbox / "damaged.tif")
    model = _model(tmp_path / "runs" / "dt.skops", ["b1", "b2", "b3"])
    args = ["serve", str(REPO / "configs" / "demo.yaml"), "--once", "--inbox", str(inbox), "--outbox", str(outbox)]
    args += ["--model", str(model), "--runs", str(tmp_path / "runs"), "--settle", "0", "--no-progress"]
    assert main(args) == 3
    out = capsys.readouterr().out
    assert "FAILED" in out and "damaged.tif" in out and "cycle report:" in out
    (ddir,) = outbox.glob("damaged-*")
    error = json.loads((ddir / f"{ddir.name}.failed.json").read_text())["error"]
    assert "damaged.tif" in error and "TIFFReadEncodedTile" in error and "Read failed" not in error, error
    assert (next(outbox.glob("good-*")) / f"{next(outbox.glob('good-*')).name}.tif").is_file()

    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["batch-map"])), sort=FlowRunSort.START_TIME_DESC, limit=1
        )
        assert run.state.is_failed(), run.state
        assert "1 of 2 scene(s) failed" in run.state.message and "damaged.tif" in run.state.message
        (task_run,) = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[f"map-{ddir.name}"]))
        )
        assert task_run.state.is_failed() and task_run.run_count == 1  # bad input: no retry

    from flows.engine import not_input_error
    from pipeline.core.errors import SourceUnavailableError, UnreadableInputError

    class _State:
        def __init__(self, exc):
            self.exc = exc

        def result(self, raise_on_failure=True):
            return self.exc

    assert not not_input_error(None, None, _State(UnreadableInputError("x")))
    assert not_input_error(None, None, _State(SourceUnavailableError("x")))  # a network source may come back
    assert not_input_error(None, None, _State(OSError(5, "Input/output error")))


def test_an_idle_cycle_writes_no_report(tmp_path):
    from pipeline.runner.batch import finish_cycle

    plan = {
        "outbox": str(tmp_path / "out"),
        "state_file": str(tmp_path / "out" / ".serve-state.json"),
        "model_path": "m.skops",
        "started": "2026-01-01T00:00:00+00:00",
        "seen": 3,
        "settling": 1,
    }
    summary = finish_cycle(plan, [])
    assert summary["cycle_report"] is None and summary["mapped"] == [] and summary["failed"] == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_an_idle_scheduled_serve_with_128_plus_its_number(prefect_api, tmp_path, signame):
    """``serve --cron`` between cycles: SIGTERM (what systemd and docker send) ends it with 143 as
    any interrupted command, pauses its deployment, and leaves no "coroutine ... was never
    awaited" (Prefect's own SIGTERM handler called a coroutine function without awaiting it and
    exited 0). Ctrl-C the same, with 130. The signal never raises inside an await (an HTTP request
    to the API at that instant printed an exception-group traceback, intermittently)."""
    import os
    import signal
    import subprocess
    import time

    from prefect.client.orchestration import get_client
    from prefect_fixtures import landcover_cmd, landcover_env

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    model = _model(tmp_path / "runs" / "dt.skops", ["b1", "b2", "b3"])
    name = f"{signame.lower()}-{tmp_path.name}"[:60]
    proc = subprocess.Popen(
        landcover_cmd(
            "serve",
            str(REPO / "configs" / "demo.yaml"),
            "--cron",
            "0 3 1 1 *",
            "--inbox",
            str(inbox),
            "--outbox",
            str(tmp_path / "outbox"),
            "--model",
            str(model),
            "--runs",
            str(tmp_path / "runs"),
            "--name",
            name,
        ),
        cwd=REPO,
        env=landcover_env(prefect_api),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        with get_client(sync_client=True) as client:
            deadline = time.time() + 300
            while True:  # until the runner polls its deployment: served and idle
                assert proc.poll() is None, proc.stderr.read()[-3000:]
                assert time.time() < deadline, "the deployment was never served"
                try:
                    dep = client.read_deployment_by_name(f"batch-map/{name}")
                    if dep.status and dep.status.value == "READY":
                        break
                except Exception:  # noqa: BLE001 - not created yet
                    pass
                time.sleep(0.5)
            signum = getattr(signal, signame)
            proc.send_signal(signum)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                pytest.fail(f"serve --cron did not stop on {signame}")
            err = proc.stderr.read()
            assert client.read_deployment_by_name(f"batch-map/{name}").paused
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 128 + signum, err[-3000:]  # 143 for SIGTERM, 130 for Ctrl-C
    assert "never awaited" not in err and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "landcover: interrupted", err[-3000:]
