"""One model's failure does not sink the run (issue #11 item 2): recorded in metrics.json,
manifest.json and the report, the other models are mapped and assessed, the CLI exits 3."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import prefect_api  # noqa: F401
from unseen_scenes import utm_scene

MODELS = {"decision_tree": {}, "max_likelihood": {}}


def _boom_fit(self, *a, **k):
    raise RuntimeError("covariance exploded on purpose\nsecond line that must not reach the console")


def _boom_map(self, block):
    raise ValueError("cannot classify this block (test)")


def _check_outputs(run: Path, failed: str, stage: str, reason: str, ok: str) -> None:
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["failed_models"]) == {failed}
    assert m["failed_models"][failed]["stage"] == stage
    assert m["failed_models"][failed]["reason"].startswith(reason)
    assert "\n" not in m["failed_models"][failed]["reason"]
    assert list(m["models"]) == [ok] and m["models"][ok]["overall_accuracy"] is not None
    man = json.loads((run / "manifest.json").read_text())
    assert man["failed_models"] == m["failed_models"]
    with rasterio.open(run / "maps" / f"{ok}.tif") as src:
        assert src.read(1).max() > 0
    md = (run / "report.md").read_text()
    assert failed in md and reason.split(":")[0] in md


def test_local_engine_goes_on_after_a_failed_fit(tmp_path, monkeypatch, capsys):
    from pipeline.cli.main import main
    from pipeline.models.max_likelihood import MaxLikelihoodModel

    monkeypatch.setattr(MaxLikelihoodModel, "_fit_features", _boom_fit)
    cfg_path = utm_scene(tmp_path / "scene", models=MODELS)
    rc = main(
        [
            "run",
            str(cfg_path),
            "--out",
            str(tmp_path / "runs"),
            "--run-id",
            "local",
            "--no-progress",
            "--engine",
            "local",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 3
    line = [ln for ln in captured.err.splitlines() if ln.startswith("landcover:")]
    assert line == [
        (
            "landcover: 1 model(s) failed, the others were reported: max_likelihood "
            "(train: RuntimeError: covariance exploded on purpose)"
        )
    ]
    # the summary's row for the failed model: its name in the model column, then stage and reason
    rows = [ln for ln in captured.out.splitlines() if ln.startswith("max_likelihood")]
    assert len(rows) == 1
    assert re.fullmatch(r"max_likelihood {2,}failed in train: RuntimeError: covariance exploded on purpose", rows[0])
    run = tmp_path / "runs" / "local"
    _check_outputs(run, "max_likelihood", "train", "RuntimeError: covariance exploded on purpose", "decision_tree")
    assert not (run / "models" / "max_likelihood.skops").exists()
    assert "1 model(s) failed: max_likelihood" in (run / "report.md").read_text()


@pytest.mark.prefect
def test_cli_flow_exit_3_names_the_model_that_failed_to_map(prefect_api, tmp_path, monkeypatch, capsys):
    from pipeline.cli.main import main
    from pipeline.models.trees import DecisionTreeModel

    monkeypatch.setattr(DecisionTreeModel, "predict_block", _boom_map)
    cfg_path = utm_scene(tmp_path / "scene", models=MODELS)
    rc = main(
        [
            "run",
            str(cfg_path),
            "--out",
            str(tmp_path / "runs"),
            "--run-id",
            "flow",
            "--no-progress",
            "--engine",
            "prefect",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 3
    line = [ln for ln in err.splitlines() if ln.startswith("landcover:")]
    assert len(line) == 1 and "decision_tree (map: ValueError: cannot classify this block (test))" in line[0]
    run = tmp_path / "runs" / "flow"
    _check_outputs(run, "decision_tree", "map", "ValueError: cannot classify this block", "max_likelihood")
    # the map that failed is not left behind looking complete
    assert not (run / "maps" / "decision_tree.tif").exists()


def test_bad_data_still_stops_at_prepare_with_exit_2(tmp_path, capsys):
    from pipeline.cli.main import main

    cfg_path = utm_scene(tmp_path / "scene", models=MODELS)
    raw = cfg_path.read_text().replace("field: class", "field: no_such_column")
    cfg_path.write_text(raw)
    rc = main(["run", str(cfg_path), "--out", str(tmp_path / "runs"), "--run-id", "bad", "--no-progress"])
    assert rc == 2
    assert "no_such_column" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "bad" / "metrics.json").exists()


def test_every_model_failing_still_ends_with_a_report_and_exit_3(tmp_path, monkeypatch, capsys):
    from pipeline.cli.main import main
    from pipeline.models.max_likelihood import MaxLikelihoodModel
    from pipeline.models.trees import DecisionTreeModel

    monkeypatch.setattr(MaxLikelihoodModel, "_fit_features", _boom_fit)
    monkeypatch.setattr(DecisionTreeModel, "_fit_features", _boom_fit)
    cfg_path = utm_scene(tmp_path / "scene", models=MODELS, split={"random_contrast": False})
    rc = main(
        ["run", str(cfg_path), "--out", str(tmp_path / "runs"), "--run-id", "all", "--no-progress", "--engine", "local"]
    )
    assert rc == 3
    assert "2 model(s) failed, no model was evaluated" in capsys.readouterr().err
    m = json.loads((tmp_path / "runs" / "all" / "metrics.json").read_text())
    assert m["models"] == {} and set(m["failed_models"]) == set(MODELS)
    assert "## Failed models" in (tmp_path / "runs" / "all" / "report.md").read_text()
