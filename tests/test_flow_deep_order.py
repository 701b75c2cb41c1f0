"""The Prefect flow trains deep models one at a time (two networks at once only split the cores
and double the memory) and gets exactly the in-process runner's results.

A real flow run on the session's Prefect test server with two tiny networks (only them: with
two task-runner threads and nothing else to train, the flow as it was started both at once);
when each model's training began and ended is read from the run's own ``run.log``, whose lines
are written in the order the events happened (one file handler, one lock).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import prefect_api  # noqa: E402,F401
from tiny_project import make_project  # noqa: E402

pytestmark = pytest.mark.prefect

TINY_NET = {"epochs": 1, "channels": 4, "batch_size": 64, "patience": 1}
MODELS = {"cnn": TINY_NET, "resnet": TINY_NET}
# a model's fits are stages of their own: one per fold, the refit, the random contrast
_EVENT = re.compile(r"stage ((?:fold-\d+|refit|random):\w+): (running|done in)")


def train_events(log_text: str) -> list[tuple[str, str]]:
    """``[("<fit>:<model>", "running" | "done in"), ...]`` in the order ``run.log`` recorded them."""
    return [(m.group(1), m.group(2)) for m in map(_EVENT.search, log_text.splitlines()) if m]


def overlapping(events: list[tuple[str, str]], models: set[str]) -> list[set[str]]:
    """The sets of fits of ``models`` that were in progress at the same time (more than one)."""
    active: set[str] = set()
    out = []
    for fit, what in events:
        if fit.split(":")[-1] not in models:
            continue
        if what == "running":
            active.add(fit)
            if len(active) > 1:
                out.append(set(active))
        else:
            active.discard(fit)
    return out


def test_overlap_check_sees_concurrent_trainings():
    """The check below can fail: interleaved start/end events of two networks are an overlap."""
    both = [("fold-0:cnn", "running"), ("refit:cnn", "running"), ("fold-0:cnn", "done in"), ("refit:cnn", "done in")]
    assert overlapping(both, {"cnn", "resnet"}) == [{"fold-0:cnn", "refit:cnn"}]
    chained = [("refit:cnn", "running"), ("fold-0:decision_tree", "running"), ("refit:cnn", "done in")]
    assert overlapping(chained + [("fold-0:resnet", "running"), ("fold-0:resnet", "done in")], {"cnn", "resnet"}) == []


def test_flow_trains_deep_models_one_at_a_time_with_the_local_runners_results(prefect_api, tmp_path):
    from pipeline.cli.main import main

    cfg = make_project(tmp_path / "project", models=MODELS)
    base = ["run", str(cfg), "--no-progress"]
    # two output folders: one would share its stage store, and the local run would reuse the flow's stages
    assert main([*base, "--out", str(tmp_path / "a"), "--run-id", "flow", "--engine", "prefect"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--run-id", "local", "--engine", "local"]) == 0
    flow_run, local_run = tmp_path / "a" / "flow", tmp_path / "b" / "local"
    events = train_events((flow_run / "run.log").read_text())
    # every fit of every model ran once, start before end: k folds and the refit (k + 1 trainings)
    k = len(json.loads((flow_run / "folds.json").read_text()))
    for m in MODELS:
        for part in [f"fold-{i}" for i in range(k)] + ["refit"]:
            assert [e for e in events if e[0] == f"{part}:{m}"] == [
                (f"{part}:{m}", "running"),
                (f"{part}:{m}", "done in"),
            ]
    assert len({e[0] for e in events}) == (k + 1) * len(MODELS), events
    assert overlapping(events, {"cnn", "resnet"}) == [], events
    manifest = json.loads((flow_run / "manifest.json").read_text())
    assert manifest["prefect_flow_run_id"] and "deep one at a time" in manifest["task_runner"]
    # Both engines' reports carry the run's provenance: times, the device the models ran on, the
    # commit, and the table of stages (those before the report, read from the provisional manifest).
    for run in (flow_run, local_run):
        man = json.loads((run / "manifest.json").read_text())
        assert man["device"] == "cpu" and set(man["device_by_model"]) == set(MODELS)
        md = (run / "report.md").read_text()
        for item in ("started", "finished", "device requested", "device used", "git commit"):
            assert re.search(rf"^\| {item} \| \S", md, re.M), (run.name, item)
        assert re.search(r"^\| train:cnn \| [\d.]+ \| no \|$", md, re.M), run.name

    # Same results as the in-process runner, which trains one model after the other.
    assert not any(s["cached"] for s in json.loads((local_run / "manifest.json").read_text())["stages"])
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (flow_run, local_run))
    timing = {"fit_seconds", "refit_seconds", "predict_mpx_per_s", "fit_info"}

    def strip(rec: dict) -> dict:
        out = {k: v for k, v in rec.items() if k not in timing}
        out["mapped"] = {k: v for k, v in out["mapped"].items() if k not in timing}
        return out

    for m in MODELS:
        assert strip(a["models"][m]) == strip(b["models"][m]), m
    import rasterio

    for m in MODELS:
        with rasterio.open(flow_run / "maps" / f"{m}.tif") as x, rasterio.open(local_run / "maps" / f"{m}.tif") as y:
            assert (x.read(1) == y.read(1)).all(), m
