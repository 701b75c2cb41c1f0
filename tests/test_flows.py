"""``landcover run`` as a Prefect flow run: manifest, cross-run stage store, exact invalidation."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import prefect_api, strip_timings  # noqa: E402,F401

pytestmark = pytest.mark.prefect

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"


def _run(out: Path, run_id: str, *extra: str) -> Path:
    from pipeline.cli.main import main

    rc = main(
        [
            "run",
            str(DEMO),
            "--models",
            "decision_tree",
            "--out",
            str(out),
            "--run-id",
            run_id,
            "--no-progress",
            "--engine",
            "prefect",
            *extra,
        ]
    )
    assert rc == 0
    return out / run_id


def _stages(run: Path) -> dict[str, dict]:
    m = json.loads((run / "manifest.json").read_text())
    return {s["name"]: s for s in m["stages"]}


@pytest.fixture(scope="module")
def runs(prefect_api, tmp_path_factory):
    out = tmp_path_factory.mktemp("flows")
    first = _run(out, "first")
    second = _run(out, "second")
    return out, first, second


def test_first_run_is_a_flow_run(runs):
    out, first, _ = runs
    m = json.loads((first / "manifest.json").read_text())
    assert m["prefect_flow_run_id"]
    names = [s["name"] for s in m["stages"]]
    k = len(json.loads((first / "folds.json").read_text()))
    fits = [f"fold-{i}:decision_tree" for i in range(k)] + ["refit:decision_tree", "random:decision_tree"]
    assert k == 5 and names == ["prepare", *fits, "train:decision_tree", "map:decision_tree", "assess", "report"]
    assert not any(s["cached"] for s in m["stages"])
    assert all(s["seconds"] > 0 for s in m["stages"])
    metrics = json.loads((first / "metrics.json").read_text())
    assert 0.3 < metrics["models"]["decision_tree"]["overall_accuracy"] <= 1.0
    for f in ("report.html", "maps/decision_tree.tif", "models/decision_tree.skops", "stages/prepare.json"):
        assert (first / f).exists(), f
    log = (first / "run.log").read_text()
    assert "stage train:decision_tree: running" in log and "Beginning flow run" in log  # landcover + Prefect logs
    # Prefect's own state lines name their run; the run ends with the stage-reuse summary
    finished = [ln for ln in log.splitlines() if "Finished in state" in ln]
    assert finished and all(re.search(r" (task|flow) run '[^']+': Finished in state ", ln) for ln in finished), finished
    assert any("task run 'train-decision_tree': Finished in state Completed()" in ln for ln in finished)
    n = len(m["stages"])
    assert f"finished: 0 of {n} stages reused" in log
    # the flow run exists on the server
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(m["prefect_flow_run_id"])
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["model-comparison", "land-cover-report"]))
        )
    assert fr.state.is_completed()
    # The comparison table and the report's path are artifacts of this run's flows.
    mine = [a for a in arts if str(first) in str(a.data) or "decision_tree" in str(a.data)]
    assert {a.key for a in mine} == {"model-comparison", "land-cover-report"}
    report_art = next(a for a in mine if a.key == "land-cover-report")
    assert str(first / "report.html") in str(report_art.data)


def _server_view(run_id: str) -> dict:
    """What the Prefect server holds about one run: its flow runs, task runs, logs and headline artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterTags,
        LogFilter,
        LogFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterTags,
    )

    tag = f"run:{run_id}"
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
        task_runs = client.read_task_runs(task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=[tag])))
        ids = [fr.id for fr in flow_runs]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200)
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["run-headline"]), flow_run_id=ArtifactFilterFlowRunId(any_=ids)
            )
        )
        flows = {fr.id: client.read_flow(fr.flow_id).name for fr in flow_runs}
    return {"flow_runs": flow_runs, "flows": flows, "task_runs": task_runs, "logs": logs, "headline": arts}


def test_runs_are_named_and_tagged_and_carry_the_pipelines_logs_and_headline(runs):
    """Issue #25.3: in the Prefect UI a run is found by its run id, its tasks by stage and model, the
    pipeline's own warnings are the run's logs, and the headline is an artifact."""
    out, first, _ = runs
    m = json.loads((first / "manifest.json").read_text())
    view = _server_view("first")
    # the run and its four sub-flows, every one named after the run id
    assert {fr.name for fr in view["flow_runs"]} == {"first"}
    assert sorted(view["flows"].values()) == sorted(
        ["landcover-pipeline", "prepare", "train_and_compare", "map_scenes", "assess_and_report"]
    )
    top = next(fr for fr in view["flow_runs"] if str(fr.id) == m["prefect_flow_run_id"])
    assert "run:first" in top.tags
    # one task run per stage of the manifest (the folds, refit and random contrast included), named
    # by stage, model and fit, tagged with the stage and model (the other task runs are the
    # parent's placeholders of the sub-flow runs: "prepare-0", ...)
    assert not any("None" in t.name for t in view["task_runs"])
    names = {t.name: t for t in view["task_runs"] if any(tag.startswith("stage:") for tag in t.tags)}
    want = {}  # task run name -> (stage, model), from the manifest's "stage:model" names
    for s in m["stages"]:
        stage, _, model = s["name"].partition(":")
        fit = stage not in ("prepare", "train", "map", "assess", "report")
        want[f"train-{model}-{stage}" if fit else f"{stage}-{model}" if model else stage] = (stage, model)
    assert {"train-decision_tree-fold-0", "train-decision_tree-refit", "train-decision_tree"} <= set(want)
    assert set(names) == set(want)
    for name, (stage, model) in want.items():
        tags = set(names[name].tags)
        assert f"stage:{stage}" in tags and ({f"model:{model}"} <= tags if model else True), (name, tags)
        assert "run:first" in tags and "landcover" in tags
    # every warning the pipeline logged to run.log is a log of the run in the API, at its level
    log = (first / "run.log").read_text()
    warned = [ln.split(" ", 4)[4] for ln in log.splitlines() if re.match(r"\S+ \S+ WARNING pipeline\.", ln)]
    assert warned, "the demo warns about its unusable polygons"
    api = Counter((rec.level, rec.message) for rec in view["logs"])
    for msg, n in Counter(warned).items():
        assert api[(30, msg)] == n, msg  # each one once: no second handler sends it again
    metrics = json.loads((first / "metrics.json").read_text())
    if metrics["evidence"]["conclusive"] is False:
        assert any(lvl == 30 and msg.startswith("evaluation inconclusive: ") for lvl, msg in api)
    # the headline, as the report opens with it, is a Markdown artifact of the run
    (art,) = view["headline"]
    assert art.type == "markdown"
    from pipeline.report.ranking import headline_text

    assert headline_text(metrics).split(":")[0] in str(art.data)
    verdict = "inconclusive" if metrics["evidence"]["conclusive"] is False else "conclusive"
    assert f"Evaluation: {verdict}" in str(art.data)


def test_rerun_in_new_directory_reuses_every_computed_stage(runs):
    from pipeline.runner.store import file_digest

    out, first, second = runs
    st2 = _stages(second)
    m2 = json.loads((second / "manifest.json").read_text())
    assert m2["prefect_flow_run_id"] != json.loads((first / "manifest.json").read_text())["prefect_flow_run_id"]
    for name in (
        "prepare",
        "fold-3:decision_tree",
        "refit:decision_tree",
        "train:decision_tree",
        "map:decision_tree",
        "assess",
    ):
        assert st2[name]["cached"] is True, name
        assert m2["stage_sources"][name] == "store"
    # the report describes its own run (directory name, times, stage table): always re-rendered
    assert st2["report"]["cached"] is False
    assert "second" in (second / "report.md").read_text()
    # the outputs are really there (hard links into the store), with the same content
    assert (second / "maps" / "decision_tree.tif").read_bytes() == (first / "maps" / "decision_tree.tif").read_bytes()
    assert file_digest(second / "patches.npy") == file_digest(first / "patches.npy")
    assert json.loads((second / "metrics.json").read_text()) == json.loads((first / "metrics.json").read_text())


def test_changed_config_part_reruns_exactly_the_affected_stages(runs):
    out, first, _ = runs
    third = _run(out, "third", "--set", "mapping.window_size=128")
    st = _stages(third)
    assert st["prepare"]["cached"] and st["train:decision_tree"]["cached"]
    assert not st["map:decision_tree"]["cached"] and not st["assess"]["cached"]


def test_tampered_store_entry_is_refused(runs):
    out, first, _ = runs
    from pipeline.runner.store import STORE_DIR

    # change the stored training outputs behind the store's back: the entry must not be used
    entry = next((out / STORE_DIR).glob("train-decision_tree/*/files/models/decision_tree.json"))
    entry.write_text(entry.read_text() + " ")
    # and one fold's out-of-fold predictions: that fold alone is fitted again
    fold = next((out / STORE_DIR).glob("fold-2-decision_tree/*/files/fits/decision_tree/fold-2.parquet"))
    fold.unlink()
    fold.write_bytes(b"not the predictions")
    fourth = _run(out, "fourth")
    st = _stages(fourth)
    assert st["prepare"]["cached"] and st["fold-1:decision_tree"]["cached"] and st["refit:decision_tree"]["cached"]
    assert not st["fold-2:decision_tree"]["cached"]
    assert not st["train:decision_tree"]["cached"]


def test_input_errors_are_not_retried():
    from prefect.states import Failed

    from flows.engine import not_input_error
    from pipeline.core.errors import InputError

    assert not_input_error(None, None, Failed(data=InputError("bad band"))) is False
    assert not_input_error(None, None, Failed(data=OSError("NFS hiccup"))) is True


def test_library_runs_without_prefect(tmp_path, monkeypatch):
    """run_pipeline stays a plain sequential driver (no engine: any API call would fail at once)."""
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")
    from pipeline.config import load_config
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_pipeline

    cfg, base = load_config(DEMO, ["mapping.window_size=512"], ["decision_tree"])
    ctx = init_run_dir(cfg, base, out=tmp_path, run_id="plain", progress=False)
    run = run_pipeline(ctx)
    assert (run / "metrics.json").exists()
    assert "prefect_flow_run_id" not in json.loads((run / "manifest.json").read_text())
