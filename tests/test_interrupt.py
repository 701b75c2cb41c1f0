"""Ctrl-C and SIGTERM stop a run in seconds, keep finished stages, and leave no process behind.

The subprocess tests run the real CLI with its own temporary Prefect server (no
PREFECT_API_URL), because what is tested is exactly that server's life and the CLI's exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_project import make_project  # noqa: E402

from pipeline.core import cancel as cancel

REPO = Path(__file__).resolve().parents[1]
# Long enough that the signal, sent 1 s into training, lands well before its end: with one torch
# thread (tests/conftest.py) and a load of 2, this fit took 4.5-4.7 s (17,500 samples/s, 1,125 an
# epoch); 8 epochs with torch's default two threads took 24.7-28.5 s (343-401 samples/s).
CNN = {"cnn": {"epochs": 40, "patience": 40, "channels": 4, "batch_size": 32}}


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONWARNINGS="ignore",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
    )
    return env


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(cond, what: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _start(cfg: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            str(cfg),
            "--out",
            str(out),
            "--no-progress",
            "--engine",
            "prefect",
            *extra,
        ],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.prefect
def test_sigint_during_deep_training_stops_within_seconds_and_resumes(tmp_path):
    """Ctrl-C during the second fold's training: the first fold's fit is kept, and --resume reuses
    it (folds are stages of their own) and trains the rest."""
    cfg = make_project(tmp_path / "p", models=CNN, split={"random_contrast": False, "strategy": "kfold", "k": 2})
    out = tmp_path / "runs"
    run = out / "c1"
    proc = _start(cfg, out, "--run-id", "c1")
    try:
        _wait_for(
            lambda: (
                "stage fold-1:cnn: running" in ((run / "run.log").read_text() if (run / "run.log").exists() else "")
            ),
            "training",
            proc,
        )
        time.sleep(1.0)
        kids = _children(proc.pid)
        assert kids, "no temporary Prefect server was started"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("the run did not stop within 10 s of Ctrl-C")
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "landcover: interrupted; resume with --resume c1", err
    assert "Traceback" not in err
    time.sleep(0.5)
    assert not [k for k in kids if _alive(k)], "a child process (the Prefect server?) outlived the CLI"
    assert (run / "stages" / "prepare.json").exists()  # the finished stages are kept
    assert (run / "stages" / "fold-0-cnn.json").exists() and (run / "fits" / "cnn" / "fold-0.parquet").exists()
    assert not (run / "stages" / "fold-1-cnn.json").exists(), "training had finished before the signal"
    assert not list(run.glob("models/*.pt")) and not (run / "metrics.json").exists()

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            str(cfg),
            "--out",
            str(out),
            "--resume",
            "c1",
            "--no-progress",
            "--engine",
            "prefect",
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((run / "manifest.json").read_text())
    assert m["stage_sources"]["prepare"] == "run" and m["stage_sources"]["fold-0:cnn"] == "run"
    assert m["stage_sources"]["fold-1:cnn"] is None and m["stage_sources"]["refit:cnn"] is None
    assert json.loads((run / "metrics.json").read_text())["models"]["cnn"]["epochs_run"] == 40


@pytest.mark.prefect
def test_kill_9_of_the_cli_leaves_no_prefect_server(tmp_path):
    cfg = make_project(tmp_path / "p")
    proc = _start(cfg, tmp_path / "runs", "--run-id", "k")
    try:
        _wait_for(lambda: bool(_children(proc.pid)), "the temporary server", proc)
        server = _children(proc.pid)
        proc.kill()  # SIGKILL to the CLI alone: nothing of it runs any more
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in server) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in server if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "the temporary Prefect server outlived the CLI"


# ----------------------------------------------------------------------------- in-process: the checks themselves
@pytest.fixture
def stop_requested():
    cancel.reset()
    yield
    cancel.reset()


def test_mapping_stops_at_the_next_window_and_leaves_nothing(tmp_path, synthetic_scene, stop_requested):
    from test_mapping import _fit_tree

    from pipeline.inputs.raster import RasterStack
    from pipeline.mapping.classify import classify_raster

    path, _ = synthetic_scene
    with RasterStack.open(path) as stack:
        model = _fit_tree(stack, tmp_path)
        cancel.request_cancel(signal.SIGTERM)
        with pytest.raises(cancel.Interrupted) as exc:
            classify_raster(model, stack, tmp_path / "m.tif", tmp_path / "c.tif", window_size=16, progress=False)
    assert exc.value.exit_code == 143
    assert not list(tmp_path.glob("m*")) and not list(tmp_path.glob(".m*")) and not list(tmp_path.glob(".c*"))


def test_deep_training_in_a_worker_thread_stops_when_asked(tmp_path, stop_requested, torch_one_thread):
    """Signals reach the main thread only; a fit in another thread must notice the request."""
    from pipeline.models.base import ModelMeta, TrainingData
    from pipeline.models.deep import CNNModel
    from pipeline.models.settings import CNNConfig

    rng = np.random.default_rng(0)
    n = 256
    x = rng.normal(size=(n, 3, 3, 3)).astype(np.float32)
    y = rng.integers(1, 3, n)
    meta = ModelMeta("cnn", ["a", "b", "c"], [1, 2], ["x", "y"], ["#000000", "#ffffff"], 3)
    model = CNNModel(CNNConfig(epochs=100000, channels=4, batch_size=16, patience=100000), meta, seed=0)
    model.progress = False
    result: dict = {}

    def fit() -> None:
        try:
            model.fit(TrainingData(x, y, np.arange(n), np.zeros((n, 2)), ["a", "b", "c"]))
            result["finished"] = True
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            result["error"] = e

    t = threading.Thread(target=fit)
    t.start()
    time.sleep(1.0)
    cancel.request_cancel(signal.SIGINT)
    t.join(timeout=60)
    assert not t.is_alive(), "training did not stop"
    assert isinstance(result.get("error"), cancel.Interrupted) and result["error"].exit_code == 130
