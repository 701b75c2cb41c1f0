"""The deployments of ``prefect.yaml`` as a Prefect user runs them (issue #25.3): a process work
pool, ``prefect deploy --all`` from the repository, ``prefect worker start``, runs triggered
through the API and executed by the worker, on the session's Prefect server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import REPO, landcover_env, prefect_api  # noqa: E402,F401
from tiny_project import make_project  # noqa: E402

pytestmark = pytest.mark.prefect

POOL = "landcover"  # the work pool prefect.yaml names
PREFECT = [sys.executable, "-m", "prefect"]


def _env(api_url: str) -> dict:
    env = landcover_env(api_url)
    # the worker's flow-run processes import this checkout; the worker looks for runs every second
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _prefect(env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*PREFECT, "--no-prompt", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"prefect {' '.join(args)}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def worker(prefect_api, tmp_path_factory):
    """Deployments created from prefect.yaml, and a process worker polling their pool."""
    env = _env(prefect_api)
    _prefect(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    _prefect(env, "deploy", "--all")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", POOL],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield log
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _run_deployment(name: str, parameters: dict, worker_log: Path, timeout: float = 600):
    """Trigger a run of deployment ``name`` through the API; wait until it is final; return it."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    fr = run_deployment(name=name, parameters=parameters, timeout=0)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            fr = client.read_flow_run(fr.id)
            if fr.state is not None and fr.state.is_final():
                return fr
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{name}: not final after {timeout} s ({fr.state}); worker: {worker_log.read_text()[-3000:]}"
                )
            time.sleep(1)


@pytest.fixture(scope="module")
def deployed_run(worker, tmp_path_factory):
    root = tmp_path_factory.mktemp("deployed")
    cfg = make_project(root / "project")
    fr = _run_deployment("landcover-pipeline/run", {"config_path": str(cfg), "out": str(root / "runs")}, worker)
    return root, cfg, fr


def test_deployments_are_created_from_prefect_yaml(worker):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_deployment_by_name("landcover-pipeline/run")
        cycle = client.read_deployment_by_name("batch-map/batch-map")
    assert run.work_pool_name == POOL and cycle.work_pool_name == POOL
    assert run.entrypoint == "flows.pipeline:landcover_pipeline" and cycle.entrypoint == "flows.batch:batch_map"
    assert "landcover" in run.tags
    # the nightly schedule is there, off until the operator sets inbox and outbox
    assert [s.active for s in cycle.schedules] == [False]


def test_a_run_triggered_through_the_api_is_executed_by_the_worker(deployed_run):
    root, _, fr = deployed_run
    assert fr.state.is_completed(), fr.state
    # the flow run is named after the run id it chose, which names the run directory
    run = root / "runs" / fr.name
    assert (run / "metrics.json").exists() and (run / "report.html").exists()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["prefect_flow_run_id"] == str(fr.id) and manifest["engine"] == "prefect"
    assert f"run:{fr.name}" in fr.tags and "landcover" in fr.tags
    # the worker's process wrote the run's log, Prefect's lines and the pipeline's
    log = (run / "run.log").read_text()
    assert "stage prepare: done" in log and "task run 'prepare': Finished in state Completed()" in log


def test_a_batch_cycle_through_the_worker_maps_its_scenes_and_fails_for_a_failed_one(deployed_run, worker):
    """A cycle run by the worker maps the good scene and, because another scene failed, ends Failed
    (what the UI and alerts see); it is named cycle-<time>, tagged with the model and its run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    root, cfg, fr = deployed_run
    runs = root / "runs"
    model = runs / fr.name / "models" / "decision_tree.skops"
    inbox = root / "inbox"
    inbox.mkdir()
    shutil.copy(cfg.parent / "scene.tif", inbox / "good.tif")
    (inbox / "broken.tif").write_bytes(b"II*\x00" + b"\x00garbage" * 200)  # not a readable TIFF
    params = {
        "config_path": str(cfg),
        "inbox": str(inbox),
        "outbox": str(root / "outbox"),
        "model": str(model),
        "runs_dir": str(runs),
        "settle_seconds": 0,
    }
    cycle = _run_deployment("batch-map/batch-map", params, worker)
    assert cycle.state.is_failed(), cycle.state
    assert "1 of 2 scene(s) failed" in cycle.state.message and "broken.tif" in cycle.state.message
    assert cycle.name.startswith("cycle-")
    assert {"landcover", "model:decision_tree", f"model-run:{fr.name}"} <= set(cycle.tags), cycle.tags
    (good,) = (root / "outbox").glob("good-*")
    assert (good / f"{good.name}.tif").is_file()
    with get_client(sync_client=True) as client:
        (task,) = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[f"map-{good.name}"]))
        )
    assert task.state.is_completed() and {f"scene:{good.name}", "model:decision_tree"} <= set(task.tags), task.tags
