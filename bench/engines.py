"""Benchmark: what a run costs with each engine when no Prefect API is configured.

``landcover bench engines`` (or ``python -m bench.engines``) runs ``landcover demo`` (or
``landcover run CONFIG`` with ``--config``) with ``--engine auto`` (the default), ``local`` and
``prefect``, each run a fresh ``landcover`` process with a fresh output folder (so no stage is
reused from an earlier run), without ``PREFECT_API_URL``, interleaved over ``repeats``: the
order of the engines rotates from one repeat to the next, so that load from other processes on
a shared machine hits every engine alike. The time of a run is the wall time of its whole
process, as a user waits for it (start-up, the temporary Prefect server where there is one,
the run, exit).

All runs share one ``PREFECT_HOME`` (made for the benchmark), as a user's does; an untimed
warm-up run of each engine first builds Prefect's database and fetches the demo scene, so the
timed runs measure what every later run costs (the warm-up trains the decision tree only). It writes ``reports/bench/engines.json``: every
run (seconds, the engine the run recorded in its manifest), the medians, and per repeat the
ratios ``auto / local`` and ``prefect / local`` with their medians. Target (issue #25.4):
``auto / local <= 1.25``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENGINES = ("auto", "local", "prefect")
TARGET = 1.25  # auto / local, at most
WARMUP_MODELS = "decision_tree"


def _env(prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(prefect_home),  # a profile of its own: no API configured there either
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PYTHONWARNINGS="ignore",
    )
    return env


def command(engine: str, out: Path, config: Path | None, models: str | None) -> list[str]:
    """The ``landcover`` command line of one run."""
    what = ["run", str(config)] if config else ["demo"]
    cmd = [sys.executable, "-m", "pipeline.cli", *what, "--engine", engine, "--out", str(out), "--run-id", "r"]
    return cmd + ["--no-progress"] + (["--models", models] if models else [])


def run_once(engine: str, out: Path, config: Path | None, models: str | None, env: dict[str, str]) -> dict[str, Any]:
    """One run in its own process: wall seconds, and the engine and run seconds its manifest records."""
    t0 = time.perf_counter()
    proc = subprocess.run(command(engine, out, config, models), cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 3):  # 3: a model failed, the run still finished
        raise RuntimeError(f"--engine {engine}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    manifest = json.loads((out / "r" / "manifest.json").read_text())
    return {
        "engine": engine,
        "seconds": round(seconds, 3),
        "engine_used": manifest.get("engine"),
        "run_seconds": manifest.get("run_seconds", manifest.get("flow_seconds")),
        "stages": len(manifest["stages"]),
        "stages_reused": sum(bool(s["cached"]) for s in manifest["stages"]),
    }


def ratios(runs: list[dict[str, Any]], engine: str, base: str = "local") -> list[float]:
    """``seconds(engine) / seconds(base)`` of each repeat (runs carry ``repeat``)."""
    by = {(r["repeat"], r["engine"]): r["seconds"] for r in runs}
    reps = sorted({r["repeat"] for r in runs})
    return [by[(i, engine)] / by[(i, base)] for i in reps if (i, engine) in by and (i, base) in by]


def engine_order(engines: tuple[str, ...], repeat: int) -> tuple[str, ...]:
    """The order the engines run in, in repeat ``repeat``: rotated by one from one repeat to the next,
    so that each engine runs first, second and last equally often (load from other processes, or
    a machine warming up, then hits every engine alike)."""
    k = repeat % len(engines)
    return engines[k:] + engines[:k]


def run_bench(
    out: Path,
    repeats: int = 3,
    engines: tuple[str, ...] = ENGINES,
    config: Path | None = None,
    models: str | None = None,
    warmup: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    if "local" not in engines:
        raise ValueError("the ratios are against --engine local: include it")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp_name:
        tmp = Path(tmp_name)
        env = _env(tmp / "prefect-home")
        if warmup:  # one model is enough to build Prefect's database and fetch the demo scene
            for engine in engines:
                run_once(engine, tmp / f"warmup-{engine}", config, WARMUP_MODELS, env)
        load_before = os.getloadavg()
        for rep in range(repeats):
            for engine in engine_order(engines, rep):
                r = run_once(engine, tmp / f"{engine}-{rep}", config, models, env)
                r["repeat"] = rep
                runs.append(r)
                if log:
                    log(f"repeat {rep} {engine:>7}: {r['seconds']:.1f} s ({r['engine_used']})", flush=True)
        load_after = os.getloadavg()
    med = {e: float(np.median([r["seconds"] for r in runs if r["engine"] == e])) for e in engines}
    rat = {f"{e}/local": ratios(runs, e) for e in engines if e != "local"}
    report = {
        "benchmark": "engines",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "what": str(config) if config else "landcover demo",
        "models": models or "all of the config",
        "repeats": repeats,
        "warmup": warmup,
        "command": " ".join(command("ENGINE", Path("OUT"), config, models)[1:]),
        "runs": runs,
        "median_seconds": med,
        "ratios": {k: {"per_repeat": [round(x, 3) for x in v], "median": float(np.median(v))} for k, v in rat.items()},
        "target_auto_over_local": TARGET,
    }
    if "auto/local" in report["ratios"]:
        report["target_met"] = report["ratios"]["auto/local"]["median"] <= TARGET
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="landcover bench engines", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated, among auto, local, prefect")
    ap.add_argument("--config", type=Path, help="run this config instead of the demo")
    ap.add_argument("--models", help="comma-separated models (default: all of the config)")
    ap.add_argument("--no-warmup", action="store_true", help="time the first run of each engine too")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "bench" / "engines.json")
    args = ap.parse_args(argv)
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        ap.error(f"--engines: unknown {', '.join(bad)}")
    rep = run_bench(args.out, args.repeats, engines, args.config, args.models, not args.no_warmup)
    for k, v in rep["ratios"].items():
        print(f"{k}: median {v['median']:.2f} (per repeat {', '.join(f'{x:.2f}' for x in v['per_repeat'])})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
