"""Kill a ``landcover run`` after its prepare stage, resume it with --resume, compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import REPO, landcover_cmd, landcover_env, prefect_api, strip_timings  # noqa: E402,F401

pytestmark = pytest.mark.prefect

DEMO = str(REPO / "configs" / "demo.yaml")
ARGS = [
    "--models",
    "decision_tree,random_forest",
    "--set",
    "models.random_forest.n_estimators=30",
    "--no-progress",
    "--engine",
    "prefect",
]


def test_resume_after_kill_gives_identical_metrics(prefect_api, tmp_path):
    out = tmp_path / "runs"
    run = out / "killed"
    proc = subprocess.Popen(
        landcover_cmd("run", DEMO, "--out", str(out), "--run-id", "killed", *ARGS),
        cwd=REPO,
        env=landcover_env(prefect_api),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not (run / "stages" / "prepare.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "prepare stage never finished"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: the run and anything it started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    assert not (run / "metrics.json").exists(), "the run finished before it was killed"
    assert not (run / "manifest.json").exists()

    from pipeline.cli.main import main

    assert main(["run", DEMO, "--out", str(out), "--resume", "killed", *ARGS]) == 0
    m = json.loads((run / "manifest.json").read_text())
    st = {s["name"]: s for s in m["stages"]}
    assert st["prepare"]["cached"] is True and m["stage_sources"]["prepare"] == "run"
    assert st["train:random_forest"]["cached"] is False
    assert m["prefect_flow_run_id"]

    # an uninterrupted run of the same config, in its own output dir (no shared stage store)
    ref_out = tmp_path / "ref"
    assert main(["run", DEMO, "--out", str(ref_out), "--run-id", "ref", *ARGS]) == 0
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((ref_out / "ref" / "metrics.json").read_text())
    assert strip_timings(got) == strip_timings(want)
    assert set(got["models"]) == {"decision_tree", "random_forest"}


def test_resume_refuses_a_changed_config(prefect_api, tmp_path):
    from pipeline.cli.main import main

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("name: other\n")
    rc = main(["run", DEMO, "--out", str(tmp_path), "--resume", "r", "--models", "decision_tree", "--no-progress"])
    assert rc == 2


def test_resume_recomputes_damaged_outputs_and_unreadable_records(tmp_path):
    """--resume checks each recorded output's size and digest: a map cut short by a full disk or a
    crash is recomputed (not "every stage reused" with an unreadable map), and a stage record that
    is not valid JSON counts as missing instead of stopping the resume with a traceback."""
    import shutil

    import rasterio
    from tiny_project import make_project

    from pipeline.cli.main import main
    from pipeline.mapping.class_maps import verify_raster

    cfg = make_project(tmp_path / "p")
    out = tmp_path / "runs"
    args = ["run", str(cfg), "--out", str(out), "--engine", "local", "--no-progress"]
    assert main([*args, "--run-id", "r"]) == 0
    run = out / "r"
    good = tmp_path / "good.tif"
    shutil.copy(run / "maps" / "decision_tree.tif", good)
    report_before = (run / "report.md").read_text()
    with open(run / "maps" / "decision_tree.tif", "r+b") as f:  # in place: the stage store's hard link too
        f.truncate(good.stat().st_size // 2)
    (run / "stages" / "train-decision_tree.json").write_text('{"stage": "train", "key": ')  # cut short
    from pipeline.core.errors import OutputWriteError

    with pytest.raises((OutputWriteError, rasterio.errors.RasterioIOError)):
        verify_raster(run / "maps" / "decision_tree.tif")

    assert main([*args, "--resume", "r"]) == 0
    st = {s["name"]: s["cached"] for s in json.loads((run / "manifest.json").read_text())["stages"]}
    assert st["prepare"] is True and st["assess"] is True
    assert st["map:decision_tree"] is False  # computed again (the store's linked copy was cut short too)
    # the unreadable record counted as missing: the stage came back from the stage store, and its record too
    assert st["train:decision_tree"] is True
    assert json.loads((run / "stages" / "train-decision_tree.json").read_text())["stage"] == "train"
    verify_raster(run / "maps" / "decision_tree.tif")
    with rasterio.open(good) as a, rasterio.open(run / "maps" / "decision_tree.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    assert (run / "report.md").read_text() == report_before
    log = (run / "run.log").read_text()
    assert "maps/decision_tree.tif has" in log and "unreadable stage record" in log

    # and a resume of an intact run reuses every stage
    assert main([*args, "--resume", "r"]) == 0
    assert all(s["cached"] for s in json.loads((run / "manifest.json").read_text())["stages"])


def _landcover(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        landcover_cmd(*args),
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_run_still_running_cannot_be_resumed_by_a_second_process(tmp_path):
    """Two processes never write one run directory: --resume of a run that is still running is one
    line naming the run and the process that holds it, exit code 2, and the running run goes on
    undisturbed; once that process is gone (killed with -9: no stale lock), --resume is accepted."""
    from tiny_project import make_project

    from pipeline.config import load_config
    from pipeline.runner.context import init_run_dir

    slow = {"cnn": {"epochs": 100000, "patience": 100000, "channels": 4, "batch_size": 32}}
    cfg = make_project(tmp_path / "p", models=slow)
    out = tmp_path / "runs"
    run = out / "busy"
    proc = _landcover("run", str(cfg), "--out", str(out), "--run-id", "busy", "--engine", "local", "--no-progress")
    try:
        deadline = time.time() + 300
        # the CNN's first fit (a fold, or the single split's) is a stage of its own: "stage fold-0:cnn: running"
        while ":cnn: running" not in ((run / "run.log").read_text() if (run / "run.log").exists() else ""):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "training never started"
            time.sleep(0.1)
        # in a subprocess: were it accepted, it would train as long as the first
        second = _landcover("run", str(cfg), "--out", str(out), "--resume", "busy", "--engine", "local")
        try:
            err = second.communicate(timeout=120)[1]
        finally:
            _stop(second)
        lines = err.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, err[-3000:]
        assert lines[0].startswith("landcover: error: --resume busy: ") and str(run) in lines[0]
        assert "is in use by" in lines[0] and f"pid {proc.pid}" in lines[0]
        assert proc.poll() is None  # the running run was not disturbed
    finally:
        _stop(proc)
        proc.stderr.close()
    c, base = load_config(cfg)
    with init_run_dir(c, base, out=out, run_id="busy", resume=True, progress=False) as ctx:
        assert ctx.run_dir == run
        # and this process may reopen its own run (the CLI, then the Prefect flow it starts)
        with init_run_dir(c, base, out=out, run_id="busy", resume=True, progress=False):
            pass


def test_resume_accepts_a_run_whose_config_lacks_a_setting_added_since(tmp_path):
    """config.yaml spells out every default: a run made before a setting existed lacks its key. Its
    settings are the same, so --resume continues it; a real change is still refused."""
    from tiny_project import make_project

    from pipeline.cli.main import main

    cfg = make_project(tmp_path / "p")
    out = tmp_path / "runs"
    args = ["run", str(cfg), "--out", str(out), "--engine", "local", "--no-progress"]
    assert main([*args, "--run-id", "old"]) == 0
    saved = out / "old" / "config.yaml"
    text = saved.read_text()
    assert "  window_size: 32\n" in text and "  max_pixels: 4000000000\n" in text
    saved.write_text(text.replace("  max_pixels: 4000000000\n", ""))  # as a run made before mapping.max_pixels
    (out / "old" / "stages" / "report.json").unlink()  # something left to do
    assert main([*args, "--resume", "old"]) == 0
    st = {s["name"]: s["cached"] for s in json.loads((out / "old" / "manifest.json").read_text())["stages"]}
    assert st["prepare"] is True and st["report"] is False
    saved.write_text(saved.read_text().replace("  window_size: 32\n", "  window_size: 64\n"))
    assert main([*args, "--resume", "old"]) == 2
