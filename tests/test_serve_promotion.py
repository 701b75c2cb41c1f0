"""``landcover serve`` promotes a model on evidence: the newest run's best model only when that
run's evaluation was conclusive, leak-free and better than a no-skill map; otherwise one line
naming the run and why, exit 2, unless the operator chooses with ``--model`` or
``--allow-inconclusive``. Every scene report and the cycle report carry the model's run id, its
evaluated accuracy with the interval over spatial units, and whether the evaluation was conclusive."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import REPO, prefect_api  # noqa: E402,F401
from test_serve import _model  # noqa: E402

from pipeline.core.errors import InputError  # noqa: E402
from pipeline.runner.promotion import BY_EVIDENCE, BY_OVERRIDE, BY_PATH, model_evaluation, promoted_model  # noqa: E402

CONCLUSIVE = {"conclusive": True, "reasons": [], "leakage": False, "leakage_reasons": []}
INCONCLUSIVE = {
    "conclusive": False,
    "reasons": ["test pixels from fewer than 2 blocks or polygons for class(es) water (1 polygon)"],
    "leakage": False,
    "leakage_reasons": [],
}


def _scores(oa: float, lo: float, hi: float, beats: bool = True) -> dict:
    """A model's metrics.json entry: its own figures differ from the ranking ones on purpose (the
    promoted model and the reported accuracy must be the ranking's)."""
    return {
        "overall_accuracy": oa - 0.2,
        "macro_f1": 1.0 - oa,  # the best macro-F1 is the worst model: ranking is by the report's rule
        "ci95": {"overall_accuracy": [0.0, 1.0], "n_blocks": 3},
        "ranking": {"overall_accuracy": oa, "kappa": oa - 0.1, "ci95": {"overall_accuracy": [lo, hi]}},
        "vs_baselines": {"majority": {"beats": beats, "significantly_better": beats}},
    }


def _run(runs: Path, name: str, finished: str, models: dict, evidence: dict | None) -> Path:
    d = runs / name
    (d / "models").mkdir(parents=True)
    metrics = {"models": models, "statistics": {"unit": "block", "n_units": 14}}
    if evidence is not None:
        metrics["evidence"] = evidence
    (d / "metrics.json").write_text(json.dumps(metrics))
    (d / "manifest.json").write_text(json.dumps({"finished": finished}))
    for m in models:
        _model(d / "models" / f"{m}.skops", ["b1", "b2", "b3"])
    return d


def test_the_newest_conclusive_runs_reported_best_model_is_promoted(tmp_path):
    runs = tmp_path / "runs"
    _run(runs, "old", "2026-01-01T00:00:00+00:00", {"svm": _scores(0.99, 0.9, 1.0)}, CONCLUSIVE)
    new = _run(
        runs,
        "new",
        "2026-02-01T00:00:00+00:00",
        {"decision_tree": _scores(0.7, 0.6, 0.8), "random_forest": _scores(0.8, 0.71, 0.88)},
        CONCLUSIVE,
    )
    (runs / ".stage-cache").mkdir()
    path, ev = promoted_model(runs)
    assert path == new / "models" / "random_forest.skops"
    assert ev["run_id"] == "new" and ev["model"] == "random_forest" and ev["promoted_by"] == BY_EVIDENCE
    assert ev["overall_accuracy"] == 0.8 and ev["ci95"] == [0.71, 0.88] and ev["conclusive"] is True
    assert ev["interval"] == "95% interval over 14 blocks (bootstrap)"


@pytest.mark.parametrize(
    "evidence, models, why",
    [
        (INCONCLUSIVE, {"max_likelihood": _scores(0.6, 0.2, 0.9)}, "evaluation inconclusive: test pixels from fewer"),
        (
            {**CONCLUSIVE, "leakage": True, "leakage_reasons": ["a random pixel split (split.strategy: random)"]},
            {"max_likelihood": _scores(0.95, 0.9, 0.99)},
            "spatial leakage: a random pixel split",
        ),
        (CONCLUSIVE, {"max_likelihood": _scores(0.5, 0.4, 0.6, beats=False)}, "does not beat the majority no-skill"),
        (None, {"max_likelihood": _scores(0.9, 0.8, 0.95)}, "no evidence verdict"),
    ],
    ids=["inconclusive", "leaky", "no_skill", "older_run"],
)
def test_a_run_without_conclusive_evidence_is_not_promoted(tmp_path, evidence, models, why):
    runs = tmp_path / "runs"
    run = _run(runs, "weak", "2026-02-01T00:00:00+00:00", models, evidence)
    with pytest.raises(InputError) as exc:
        promoted_model(runs)
    msg = str(exc.value)
    assert msg.startswith(f"{run}: not promoting its best model max_likelihood: ") and why in msg, msg
    assert "--model PATH or --allow-inconclusive" in msg and "\n" not in msg
    path, ev = promoted_model(runs, allow_inconclusive=True)  # the operator's deliberate choice
    assert path == run / "models" / "max_likelihood.skops" and ev["promoted_by"] == BY_OVERRIDE


def test_a_model_chosen_by_path_carries_its_runs_evaluation(tmp_path):
    runs = tmp_path / "runs"
    run = _run(runs, "r", "2026-02-01T00:00:00+00:00", {"decision_tree": _scores(0.7, 0.6, 0.8)}, INCONCLUSIVE)
    ev = model_evaluation(run / "models" / "decision_tree.skops")
    assert (ev["run_id"], ev["overall_accuracy"], ev["ci95"], ev["conclusive"]) == ("r", 0.7, [0.6, 0.8], False)
    assert ev["promoted_by"] == BY_PATH and ev["reasons"] == INCONCLUSIVE["reasons"]
    loose = _model(tmp_path / "runs" / "loose.skops", ["b1", "b2", "b3"])
    ev = model_evaluation(loose)
    assert ev["run_id"] is None and ev["overall_accuracy"] is None and ev["conclusive"] is None


def _serve(inbox: Path, outbox: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "serve",
        str(REPO / "configs" / "demo.yaml"),
        "--once",
        "--inbox",
        str(inbox),
        "--outbox",
        str(outbox),
        "--runs",
        str(runs),
        "--settle",
        "0",
        "--no-progress",
        *extra,
    ]


@pytest.mark.prefect
def test_serve_refuses_an_inconclusive_run_and_reports_the_evidence_of_what_it_maps(
    prefect_api, synthetic_scene, tmp_path, capsys
):
    from pipeline.cli.main import main

    scene, _ = synthetic_scene
    inbox, runs = tmp_path / "inbox", tmp_path / "runs"
    inbox.mkdir()
    shutil.copy(scene, inbox / "a.tif")
    weak = _run(runs, "weak", "2026-02-01T00:00:00+00:00", {"max_likelihood": _scores(0.6, 0.2, 0.9)}, INCONCLUSIVE)
    capsys.readouterr()

    # 1. no model to promote on the evidence: one line naming the run and why, nothing mapped
    outbox = tmp_path / "out1"
    assert main(_serve(inbox, outbox, runs)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"landcover: error: {weak}: not promoting"), err
    assert "inconclusive" in err[0]
    assert not list(outbox.glob("*/*.tif")) and not (outbox / "cycles").exists()

    # 2. the operator promotes it deliberately: mapped, and every report says on what evidence
    outbox = tmp_path / "out2"
    assert main(_serve(inbox, outbox, runs, "--allow-inconclusive")) == 0
    (sdir,) = outbox.glob("a-*")
    rep = json.loads((sdir / f"{sdir.name}.json").read_text())
    ev = rep["model_evaluation"]
    assert rep["model_run"] == "weak" and rep["model_name"] == "decision_tree"  # what the file holds
    assert (ev["model"], ev["overall_accuracy"], ev["ci95"]) == ("max_likelihood", 0.6, [0.2, 0.9])
    assert ev["conclusive"] is False and ev["promoted_by"] == "--allow-inconclusive"
    md = (sdir / f"{sdir.name}.md").read_text()
    assert "run `weak`" in md and "[0.200, 0.900]" in md and "**inconclusive**" in md and "--allow-inconclusive" in md
    (cycle,) = (outbox / "cycles").glob("*.json")
    c = json.loads(cycle.read_text())
    assert c["model_run"] == "weak" and c["model_evaluation"]["conclusive"] is False
    assert "**inconclusive**" in cycle.with_suffix(".md").read_text()

    # 3. a newer, conclusive run: promoted on its evidence, figures as metrics.json has them
    _run(runs, "strong", "2026-03-01T00:00:00+00:00", {"decision_tree": _scores(0.83, 0.74, 0.9)}, CONCLUSIVE)
    outbox = tmp_path / "out3"
    assert main(_serve(inbox, outbox, runs)) == 0
    (sdir,) = outbox.glob("a-*")
    ev = json.loads((sdir / f"{sdir.name}.json").read_text())["model_evaluation"]
    metrics = json.loads((runs / "strong" / "metrics.json").read_text())["models"]["decision_tree"]["ranking"]
    assert ev["run_id"] == "strong" and ev["conclusive"] is True and ev["promoted_by"] == "evidence"
    assert ev["overall_accuracy"] == metrics["overall_accuracy"] and ev["ci95"] == metrics["ci95"]["overall_accuracy"]
    assert "conclusive and leak-free" in (sdir / f"{sdir.name}.md").read_text()
