"""``landcover serve``: scheduled batch mapping of new rasters.

Each cycle (one run of the ``batch-map`` flow in :mod:`flows.pipeline`):

1. finds candidate rasters: ``*.tif``/``*.tiff`` in the inbox (hidden files and files
   modified less than ``--settle`` seconds ago are left for the next cycle, so a file
   still being copied is not mapped half-written) plus any ``--raster`` paths;
2. drops those already in the state file (key: resolved path + size + mtime, so a
   replaced file counts as new); failed scenes are not retried unless they change or
   ``--retry-failed`` is given;
3. maps each new scene in its own task (retried twice on I/O errors, never on bad
   input) with the registered model: ``--model PATH`` if given, else the model with the
   best macro-F1 in ``metrics.json`` of the newest finished run (by ``manifest.json``
   ``finished``) in the runs directory (the config's ``output_dir`` unless ``--runs``);
4. writes ``<outbox>/<scene>/<scene>.tif`` (+ ``_confidence.tif``, ``.json``, ``.md``)
   per mapped scene, ``<outbox>/<scene>/<scene>.failed.json`` per failed scene, and a
   cycle report ``<outbox>/cycles/<UTC time>.json``/``.md``; then records every scene
   in the state file (default ``<outbox>/.serve-state.json``).

This module imports Prefect only when a cycle runs, so the CLI stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text
from pipeline.errors import InputError

log = logging.getLogger("landcover")
RASTER_SUFFIXES = {".tif", ".tiff"}


# ----------------------------------------------------------------------------- model registry
def newest_run(runs_dir: Path) -> Path | None:
    """The newest finished run (has metrics.json) in ``runs_dir``, by manifest ``finished``."""
    best: tuple[str, float, Path] | None = None
    if not runs_dir.is_dir():
        return None
    for d in runs_dir.iterdir():
        if d.name.startswith(".") or not (d / "metrics.json").is_file():
            continue
        finished = ""
        try:
            finished = json.loads((d / "manifest.json").read_text()).get("finished") or ""
        except (OSError, ValueError):
            pass
        cand = (finished, (d / "metrics.json").stat().st_mtime, d)
        if best is None or cand[:2] > best[:2]:
            best = cand
    return best[2] if best else None


def best_model(runs_dir: Path) -> Path:
    """The saved model with the best macro-F1 of the newest run in ``runs_dir``."""
    from pipeline.models import MODEL_SUFFIX

    run = newest_run(runs_dir)
    if run is None:
        raise InputError(f"{runs_dir}: no finished run (with metrics.json) to take the best model from; "
                         "run `landcover run CONFIG` first or pass --model PATH")
    metrics = json.loads((run / "metrics.json").read_text()).get("models") or {}
    ranked = sorted(((r.get("macro_f1") if r.get("macro_f1") is not None else -1.0, name)
                     for name, r in metrics.items()), reverse=True)
    for _, name in ranked:
        p = run / "models" / f"{name}{MODEL_SUFFIX.get(name, '.pkl')}"
        if p.exists():
            return p
    raise InputError(f"{run}: no saved model file for any of {', '.join(metrics) or 'its models'}")


# ----------------------------------------------------------------------------- state
def _scene_key(p: Path, st: os.stat_result) -> str:
    return f"{p}|{st.st_size}|{st.st_mtime_ns}"


def read_state(path: Path) -> dict:
    if not path.exists():
        return {"version": 1, "processed": {}}
    try:
        state = json.loads(path.read_text())
    except ValueError:
        raise InputError(f"{path}: serve state file is not valid JSON; fix or delete it") from None
    state.setdefault("processed", {})
    return state


def _safe_name(stem: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "scene"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def plan_cycle(config_path: str, inbox: str | None, outbox: str | None, model: str | None,
               rasters: list[str] | None, state_file: str | None, runs_dir: str | None,
               settle_seconds: float, retry_failed: bool) -> dict:
    """Decide what this cycle maps (no side effects beyond creating the outbox)."""
    from pipeline.config import load_config

    cfg, _ = load_config(config_path)
    if not inbox and not rasters:
        raise InputError("serve: give an inbox folder (--inbox DIR) or rasters (--raster PATH)")
    out = Path(outbox or Path(cfg.output_dir) / "outbox").resolve()
    out.mkdir(parents=True, exist_ok=True)
    state_path = Path(state_file).resolve() if state_file else out / ".serve-state.json"
    state = read_state(state_path)
    model_path = Path(model).resolve() if model else best_model(Path(runs_dir or cfg.output_dir).resolve())
    if not model_path.exists():
        raise InputError(f"{model_path}: model file not found")

    cands: list[Path] = []
    if inbox:
        ib = Path(inbox)
        if not ib.is_dir():
            raise InputError(f"{ib}: inbox folder not found")
        cands += sorted(p for p in ib.iterdir()
                        if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith("."))
    cands += [Path(r) for r in rasters or []]
    now = time.time()
    todo, seen, settling, taken = [], 0, 0, set()
    for p in cands:
        p = p.resolve()
        try:
            st = p.stat()
        except OSError:
            todo.append({"path": str(p), "key": f"{p}|missing", "name": _safe_name(p.stem, taken)})
            continue
        seen += 1
        if now - st.st_mtime < settle_seconds:
            settling += 1
            continue
        key = _scene_key(p, st)
        prev = state["processed"].get(key)
        if prev is not None and (prev.get("status") == "mapped" or not retry_failed):
            continue
        todo.append({"path": str(p), "key": key, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "name": _safe_name(p.stem, taken)})
    return {"config": str(config_path), "outbox": str(out), "state_file": str(state_path),
            "model_path": str(model_path), "todo": todo, "seen": seen, "settling": settling,
            "window_size": cfg.mapping.window_size, "workers": cfg.mapping.workers,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


# ----------------------------------------------------------------------------- one scene
def map_one_scene(scene: dict, model_path: str, outbox: str, window_size: int, workers: int,
                  logger: Any = None) -> dict:
    """Map one raster; writes the class map, confidence, and a JSON + Markdown report."""
    from pipeline.mapping import classify_raster, open_for_model
    from pipeline.models import load_model

    logger = logger or log
    path = Path(scene["path"])
    if not path.exists():
        raise InputError(f"{path}: raster file not found")
    model = load_model(model_path, device="cpu")
    meta = model.meta
    odir = Path(outbox) / scene["name"]
    map_path, conf_path = odir / f"{scene['name']}.tif", odir / f"{scene['name']}_confidence.tif"
    with open_for_model(path, list(meta.band_names)) as stack:
        res = classify_raster(model, stack, map_path, confidence_path=conf_path, window_size=window_size,
                              workers=workers, progress=False)
        crs = stack.grid.crs.to_string() if stack.grid.crs else None
        size = [stack.grid.width, stack.grid.height]
    areas: dict = {}
    try:
        from pipeline.accuracy import class_area_table

        areas = class_area_table(map_path, list(meta.class_ids), list(meta.class_names))
    except Exception as e:  # noqa: BLE001 - the area table is a nicety; the map is what matters
        logger.warning("%s: no class area table (%s)", path, e)
    report = {"scene": scene["name"], "input": str(path), "input_bytes": scene.get("bytes"),
              "model": str(model_path), "model_name": meta.model, "bands": list(meta.band_names),
              "map": str(map_path), "confidence": str(conf_path), "crs": crs, "size": size,
              "seconds": round(res["seconds"], 3), "mpx_per_s": round(res["mpx_per_s"], 3),
              "class_areas": areas,
              "mapped_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    write_text(odir / f"{scene['name']}.json", json.dumps(report, indent=2, default=str))
    lines = [f"# {scene['name']}", "", f"- input: `{path}`", f"- model: `{model_path}` ({meta.model})",
             f"- map: `{map_path.name}` ({size[0]} x {size[1]} px, {crs})",
             f"- mapped in {res['seconds']:.2f} s", ""]
    if areas:
        lines += ["| class | pixels | share |", "|---|---:|---:|"]
        for name, a in areas.items():
            if isinstance(a, dict):
                share = a.get("fraction", a.get("share"))
                lines.append(f"| {name} | {a.get('pixels', '')} | {share if share is not None else ''} |")
    write_text(odir / f"{scene['name']}.md", "\n".join(lines) + "\n")
    (odir / f"{scene['name']}.failed.json").unlink(missing_ok=True)
    logger.info("mapped %s -> %s", path, map_path)
    return {**scene, "status": "mapped", "map": str(map_path), "report": str(odir / f"{scene['name']}.json"),
            "seconds": report["seconds"]}


# ----------------------------------------------------------------------------- cycle end
def finish_cycle(plan: dict, results: list[dict]) -> dict:
    """Record every scene in the state file, write failure files and the cycle report."""
    from pipeline.run import write_json

    out = Path(plan["outbox"])
    now = dt.datetime.now(dt.timezone.utc)
    for r in results:
        if r["status"] == "failed":
            write_json(out / r["name"] / f"{r['name']}.failed.json",
                       {"input": r["path"], "error": r.get("error"), "at": now.isoformat(timespec="seconds")})
    state_path = Path(plan["state_file"])
    state = read_state(state_path)  # re-read: keep what another cycle may have added
    for r in results:
        state["processed"][r["key"]] = {"path": r["path"], "status": r["status"], "at": now.isoformat(timespec="seconds"),
                                        **({"map": r["map"]} if r.get("map") else {}),
                                        **({"error": r["error"]} if r.get("error") else {})}
    write_json(state_path, state)
    mapped = [r for r in results if r["status"] == "mapped"]
    failed = [r for r in results if r["status"] == "failed"]
    summary = {"started": plan["started"], "finished": now.isoformat(timespec="seconds"), "model": plan["model_path"],
               "seen": plan["seen"], "settling": plan["settling"],
               "mapped": [{"input": r["path"], "map": r["map"], "report": r["report"]} for r in mapped],
               "failed": [{"input": r["path"], "error": r.get("error")} for r in failed]}
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    write_json(out / "cycles" / f"{stamp}.json", summary)
    md = [f"# Batch mapping cycle {stamp}", "", f"Model: `{plan['model_path']}`", "",
          f"{len(mapped)} mapped, {len(failed)} failed, {plan['seen']} seen, {plan['settling']} still settling.", ""]
    md += [f"- mapped `{r['path']}` -> `{r['map']}`" for r in mapped]
    md += [f"- FAILED `{r['path']}`: {r.get('error')}" for r in failed]
    write_text(out / "cycles" / f"{stamp}.md", "\n".join(md) + "\n")
    summary["cycle_report"] = str(out / "cycles" / f"{stamp}.json")
    return summary


# ----------------------------------------------------------------------------- CLI
def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    cfg, _ = load_config(args.config)  # validate now: a bad config fails before Prefect starts
    if not args.once and not args.cron:
        raise InputError("serve: give --cron \"MIN HOUR DOM MON DOW\" (or --once for one cycle)")
    if args.model is not None and not args.model.exists():
        raise InputError(f"{args.model}: model file not found")
    params = {"config_path": str(args.config.resolve()),
              "inbox": str(args.inbox.resolve()) if args.inbox else None,
              "outbox": str(args.outbox.resolve()) if args.outbox else str(Path(cfg.output_dir, "outbox").resolve()),
              "model": str(args.model.resolve()) if args.model else None,
              "rasters": [str(Path(r).resolve()) for r in args.raster] or None,
              "state_file": str(args.state.resolve()) if args.state else None,
              "runs_dir": str((args.runs or Path(cfg.output_dir)).resolve()),
              "settle_seconds": args.settle, "retry_failed": args.retry_failed, "dask_address": args.dask}
    from flows.pipeline import batch_map  # imports Prefect

    log.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.once:
        summary = batch_map(**params)
        for m in summary["mapped"]:
            print(f"mapped {m['input']} -> {m['map']}")
        for f in summary["failed"]:
            print(f"FAILED {f['input']}: {f['error']}")
        print(f"cycle report: {summary['cycle_report']}")
        return 1 if summary["failed"] else 0
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        log.warning("no PREFECT_API_URL: an ephemeral server has no scheduler, so the cron schedule will not "
                    "create runs. Start `prefect server start --host 127.0.0.1` and export "
                    "PREFECT_API_URL=http://127.0.0.1:4200/api, or put `landcover serve CONFIG --once ...` in a crontab")
    print(f"serving deployment {args.name!r} of flow 'batch-map' on cron {args.cron!r} (Ctrl-C stops it)")
    batch_map.serve(name=args.name, cron=args.cron, parameters=params, limit=1)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="scheduled batch mapping of new rasters in an inbox folder",
                       description="Serve a Prefect deployment that maps every new raster in an inbox with the "
                                   "registered best model on a cron schedule; --once runs one cycle and exits.")
    p.add_argument("config", type=Path)
    p.add_argument("--cron", help='cron schedule, e.g. "0 3 * * *"')
    p.add_argument("--once", action="store_true", help="run one cycle in this process and exit "
                   "(exit code 1 when a scene failed)")
    p.add_argument("--inbox", type=Path, help="folder watched for new *.tif/*.tiff rasters")
    p.add_argument("--raster", action="append", default=[], metavar="PATH", help="also map this raster (repeatable)")
    p.add_argument("--outbox", type=Path, help="where maps and reports go (default: OUTPUT_DIR/outbox)")
    p.add_argument("--model", type=Path, help="saved model to map with (default: best macro-F1 of the newest run)")
    p.add_argument("--runs", type=Path, help="runs directory to take the best model from (default: the config's output_dir)")
    p.add_argument("--state", type=Path, help="state file of processed inputs (default: OUTBOX/.serve-state.json)")
    p.add_argument("--settle", type=float, default=10.0, metavar="SECONDS",
                   help="leave files modified less than this long ago for the next cycle (default 10)")
    p.add_argument("--retry-failed", action="store_true", help="retry scenes that failed in an earlier cycle")
    p.add_argument("--name", default="landcover-batch-map", help="deployment name")
    p.add_argument("--dask", metavar="ADDRESS", help="map scenes on this Dask cluster")
    p.set_defaults(func=cmd_serve)
