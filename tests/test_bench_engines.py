"""``landcover bench engines`` runs each engine in its own process and reports the ratios of its
own measurements (issue #25.4); the figures themselves are in docs/benchmarks.md, not asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_project import make_project  # noqa: E402

from bench.engines import engine_order, main  # noqa: E402


def test_engines_take_turns_to_run_first():
    orders = [engine_order(("auto", "local", "prefect"), rep) for rep in range(3)]
    assert orders == [("auto", "local", "prefect"), ("local", "prefect", "auto"), ("prefect", "auto", "local")]
    assert engine_order(("local", "auto"), 3) == ("auto", "local")


def test_bench_engines_times_each_engine_in_its_own_run_and_reports_the_ratios(tmp_path):
    cfg = make_project(tmp_path / "project")
    out = tmp_path / "engines.json"
    args = ["--config", str(cfg), "--engines", "local,auto", "--repeats", "1", "--no-warmup", "--out", str(out)]
    assert main(args) == 0
    rep = json.loads(out.read_text())
    runs = rep["runs"]
    assert [(r["repeat"], r["engine"]) for r in runs] == [(0, "local"), (0, "auto")]
    # no PREFECT_API_URL: auto ran in process; every run computed every stage (fresh output folder)
    assert {r["engine_used"] for r in runs} == {"local"}
    assert all(r["stages_reused"] == 0 and r["stages"] > 0 for r in runs)
    # the ratio is that of the recorded seconds
    sec = {r["engine"]: r["seconds"] for r in runs}
    assert rep["ratios"]["auto/local"]["per_repeat"] == [round(sec["auto"] / sec["local"], 3)]
    assert rep["ratios"]["auto/local"]["median"] == pytest.approx(sec["auto"] / sec["local"])
    assert rep["target_met"] == (rep["ratios"]["auto/local"]["median"] <= 1.25)
