"""``landcover run --dask ADDRESS``: the same flow on a local Dask cluster started here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import REPO, prefect_api  # noqa: E402,F401

pytestmark = pytest.mark.prefect


def test_flow_runs_on_a_dask_cluster(prefect_api, dask_cluster, tmp_path):
    pytest.importorskip("prefect_dask")
    from pipeline.cli.main import main

    cluster, client = dask_cluster  # the session's cluster (tests/conftest.py)
    worker_pids = set(client.run(os.getpid).values())
    rc = main(
        [
            "run",
            str(REPO / "configs" / "demo.yaml"),
            "--models",
            "decision_tree,max_likelihood",
            "--out",
            str(tmp_path),
            "--run-id",
            "dask",
            "--no-progress",
            "--dask",
            cluster.scheduler_address,
        ]
    )
    assert rc == 0
    run = tmp_path / "dask"
    m = json.loads((run / "manifest.json").read_text())
    assert m["task_runner"].startswith("dask:") and m["prefect_flow_run_id"]
    assert not any(s["cached"] for s in m["stages"])
    # every stage ran in a worker process, none in this one
    assert set(m["stage_workers"].values()) <= worker_pids, (m["stage_workers"], worker_pids)
    assert {"train:decision_tree", "train:max_likelihood"} <= set(m["stage_workers"])
    # every fold of the spatial cross-validation was a task of its own, run by the workers
    k = len(json.loads((run / "folds.json").read_text()))
    assert k > 1 and {f"fold-{i}:max_likelihood" for i in range(k)} <= set(m["stage_workers"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["models"]) == {"decision_tree", "max_likelihood"}
    assert "stage train:max_likelihood" in (run / "run.log").read_text()  # worker logs reach run.log
