"""Batch mapping of new rasters (library code behind ``landcover serve``).

One cycle is :func:`plan_cycle` (what to map), :func:`map_one_scene` per scene, then
:func:`finish_cycle` (state file, failure files, cycle report). The Prefect flow
``batch-map`` in :mod:`flows.serve` is a thin wrapper that runs the scenes as tasks.

1. :func:`plan_cycle` finds candidate rasters: ``*.tif``/``*.tiff`` in the inbox (hidden
   files and files modified less than ``settle_seconds`` ago are left for the next cycle,
   so a file still being copied is not mapped half-written) plus any explicit rasters;
   drops those already in the state file (key: resolved path + size + mtime, so a replaced
   file counts as new); failed scenes are not retried unless they change or
   ``retry_failed`` is set; picks the model: the given path, else the best model of the
   newest finished run in the runs directory, promoted only on conclusive, leak-free evidence
   (:mod:`pipeline.runner.promotion`).
2. :func:`map_one_scene` writes ``<outbox>/<scene>/<scene>.tif`` (+ ``_confidence.tif``,
   ``.json``, ``.md``; both reports say which run's model mapped it and on what evidence).
3. :func:`finish_cycle` writes ``<outbox>/<scene>/<scene>.failed.json`` per failed scene,
   the cycle report ``<outbox>/cycles/<UTC time>.json``/``.md``, and records every scene
   in the state file (default ``<outbox>/.serve-state.json``); a cycle that mapped nothing
   and failed nothing writes nothing. A cycle in which a scene failed is a failure
   (:class:`CycleFailed`: the flow run ends Failed, ``serve --once`` exits 3).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
import unicodedata
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_json, write_text
from pipeline.core.errors import InputError

log = logging.getLogger(__name__)
RASTER_SUFFIXES = {".tif", ".tiff"}


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


def scene_name(path: Path, key: str) -> str:
    """The outbox folder (and file stem) of one input: a readable part of its name plus a
    hash of its state key (resolved path, size, modification time).

    Different inputs never share a folder, in one cycle or across cycles: ``a b.tif`` and
    ``a?b.tif`` read the same once their odd characters are replaced, and names in other
    scripts keep their letters (Unicode word characters) but could still collide, so the
    hash decides. A new version of a file (same path, new size or time) gets a new folder
    instead of overwriting the maps of the old one.
    """
    stem = unicodedata.normalize("NFC", path.stem)
    slug = re.sub(r"[^\w.-]+", "_", stem).strip("._-")[:60] or "scene"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def plan_cycle(
    config_path: str,
    inbox: str | None,
    outbox: str | None,
    model: str | None,
    rasters: list[str] | None,
    state_file: str | None,
    runs_dir: str | None,
    settle_seconds: float,
    retry_failed: bool,
    allow_inconclusive: bool = False,
    max_pixels: int | None = None,
    allow_outside_inbox: bool = False,
) -> dict:
    """Decide what this cycle maps (no side effects beyond creating the outbox). ``max_pixels``
    overrides the config's ``mapping.max_pixels``; inbox files are confined to the inbox when
    read (:mod:`pipeline.runner.inbox`) unless ``allow_outside_inbox``."""
    from pipeline.config.loading import load_config
    from pipeline.runner.promotion import BY_PATH, model_evaluation, model_in_runs, promoted_model

    cfg, _ = load_config(config_path)
    if not inbox and not rasters:
        raise InputError("serve: give an inbox folder (--inbox DIR) or rasters (--raster PATH)")
    out = Path(outbox or Path(cfg.output_dir) / "outbox").resolve()
    out.mkdir(parents=True, exist_ok=True)
    state_path = Path(state_file).resolve() if state_file else out / ".serve-state.json"
    state = read_state(state_path)
    runs = Path(runs_dir or cfg.output_dir).resolve()
    if model:
        model_path = model_in_runs(model, runs)
        if not model_path.exists():
            raise InputError(f"{model_path}: model file not found")
        evaluation = model_evaluation(model_path, BY_PATH)
    else:
        model_path, evaluation = promoted_model(runs, allow_inconclusive)

    cands: list[Path] = []
    if inbox:
        ib = Path(inbox)
        if not ib.is_dir():
            raise InputError(f"{ib}: inbox folder not found")
        cands += sorted(
            p
            for p in ib.iterdir()
            if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith(".")
        )
    # Inbox files must stay inside the inbox when read (links, VRT sources), unless allowed.
    confined = {str(p): str(Path(inbox).resolve()) for p in cands} if inbox and not allow_outside_inbox else {}
    cands += [Path(r) for r in rasters or []]
    now = time.time()
    todo: list[dict[str, Any]] = []
    seen, settling = 0, 0
    for entry in cands:
        p = entry.resolve()
        try:
            st = p.stat()
        except OSError:
            todo.append({"path": str(p), "key": f"{p}|missing", "name": scene_name(p, f"{p}|missing")})
            continue
        seen += 1
        if now - st.st_mtime < settle_seconds:
            settling += 1
            continue
        key = _scene_key(p, st)
        # The folder is named after the file the operator dropped (a link keeps its own name).
        prev = state["processed"].get(key)
        if prev is not None and (prev.get("status") == "mapped" or not retry_failed):
            continue
        todo.append(
            {
                "path": str(p),
                "key": key,
                "bytes": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "name": scene_name(entry, key),
            }
        )
        if str(entry) in confined:
            todo[-1].update(entry=str(entry), inbox=confined[str(entry)])
    for sc in todo:  # every scene's report says which model mapped it, on what evidence
        sc["model_evaluation"] = evaluation
        sc["max_pixels"] = max_pixels if max_pixels is not None else cfg.mapping.max_pixels
    return {
        "config": str(config_path),
        "outbox": str(out),
        "state_file": str(state_path),
        "model_path": str(model_path),
        "model_evaluation": evaluation,
        "todo": todo,
        "seen": seen,
        "settling": settling,
        "window_size": cfg.mapping.window_size,
        "workers": cfg.mapping.workers,
        "outputs": cfg.outputs.model_dump(mode="json"),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _area_lines(areas: dict) -> list[str]:
    """Markdown table of a scene's class areas, rounded as the run report rounds them."""
    from pipeline.report.format import fmt, md_text

    lines = ["| class | pixels | area (ha) | share |", "|---|---:|---:|---:|"]
    for name, a in areas.items():
        if isinstance(a, dict):
            lines.append(
                f"| {md_text(name)} | {fmt(a.get('pixels'), 'int')} | {fmt(a.get('area_ha'), 'ha')} | "
                f"{fmt(a.get('fraction', a.get('share')), 'pct')} |"
            )
    return lines


# ----------------------------------------------------------------------------- one scene
def map_one_scene(
    scene: dict,
    model_path: str,
    outbox: str,
    window_size: int,
    workers: int,
    logger: Any = None,
    progress: bool = False,
    strict: bool = False,
    outputs: dict | None = None,
) -> dict:
    """Map one raster; writes the class map (with its class-table sidecars), confidence, and a
    JSON + Markdown report; with ``outputs`` (the config's ``outputs:`` section) also the MMU map
    ``<scene>_mmu.tif`` and the polygons ``<scene>.gpkg``. ``progress`` shows a mapping progress bar. Input values or a data type
    clearly unlike the model's training pixels are a warning in the log and both reports, or with
    ``strict`` an :class:`InputError` (the scene fails and nothing of it is written)."""
    from pipeline.inputs.value_range import check_stack
    from pipeline.mapping.classify import check_map_size, classify_raster, dask_client_here
    from pipeline.mapping.model_inputs import open_for_model
    from pipeline.mapping.settings import DEFAULT_MAX_PIXELS
    from pipeline.models.registry import load_model
    from pipeline.runner.promotion import evaluation_sentence, model_evaluation

    logger = logger or log
    path = Path(scene["path"])
    if not path.exists():
        raise InputError(f"{path}: raster file not found")
    if scene.get("inbox"):  # an inbox file: neither it nor what it reads may lie outside the inbox
        from pipeline.runner.inbox import check_inside_inbox

        check_inside_inbox(scene.get("entry") or path, scene["inbox"])
    model = load_model(model_path, device="cpu")
    meta = model.meta
    odir = Path(outbox) / scene["name"]
    map_path, conf_path = odir / f"{scene['name']}.tif", odir / f"{scene['name']}_confidence.tif"
    # On a Dask worker (serve --dask) the scene's windows become tasks across the cluster too.
    with (
        open_for_model(
            path,
            list(meta.band_names),
            model_nodata=getattr(meta, "nodata", None),
            alignment=getattr(meta, "alignment", None),
        ) as stack,
        dask_client_here() as client,
    ):
        max_pixels = scene.get("max_pixels", DEFAULT_MAX_PIXELS)
        check_map_size(stack, max_pixels, "mapping.max_pixels / --max-pixels")  # before any pixel is read
        problem = check_stack(stack, getattr(meta, "value_range", None))
        if problem and strict:
            raise InputError(problem)
        if problem:
            logger.warning("%s", problem)
        res = classify_raster(
            model,
            stack,
            map_path,
            confidence_path=conf_path,
            window_size=window_size,
            workers=workers,
            progress=progress,
            client=client,
            max_pixels=max_pixels,
            max_pixels_key="mapping.max_pixels / --max-pixels",
        )
        crs = stack.grid.crs.to_string() if stack.grid.crs else None
        size = [stack.grid.width, stack.grid.height]
    from pipeline.inputs.class_table import ClassTable
    from pipeline.mapping.deliver import deliver_map
    from pipeline.mapping.settings import OutputsConfig

    opts = OutputsConfig.model_validate(outputs or {})
    made = deliver_map(
        map_path,
        ClassTable.from_meta(meta),
        mmu=opts.minimum_mapping_unit(),
        polygons=odir / f"{scene['name']}.gpkg" if opts.polygons else None,
        connectivity=opts.connectivity,
    )
    areas: dict = {}
    try:
        from pipeline.evaluation.area_estimates import class_area_table

        # the areas of the map delivered: after the minimum mapping unit when there is one
        areas = class_area_table(made["final"], list(meta.class_ids), list(meta.class_names))
    except Exception as e:  # noqa: BLE001 - the area table is a nicety; the map is what matters
        logger.warning("%s: no class area table (%s)", path, e)
    evaluation = scene.get("model_evaluation") or model_evaluation(model_path)
    report = {
        "scene": scene["name"],
        "input": str(path),
        "input_bytes": scene.get("bytes"),
        "model": str(model_path),
        "model_name": meta.model,
        "model_run": evaluation.get("run_id"),
        # the evidence behind the model: its run's accuracy with the interval over spatial units
        "model_evaluation": evaluation,
        "bands": list(meta.band_names),
        "map": str(map_path),
        "confidence": str(conf_path),
        "crs": crs,
        "size": size,
        "seconds": round(res["seconds"], 3),
        "mpx_per_s": round(res["mpx_per_s"], 3),
        "class_areas": areas,
        "class_areas_map": made["final"],
        "mmu": made["mmu"],
        "polygons": made["polygons"],
        "value_range_warning": problem,
        # where the work ran: this process, and the Dask workers that classified windows
        "mapped_by": {"pid": os.getpid(), "window_workers": res.get("workers", {})},
        "mapped_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_text(odir / f"{scene['name']}.json", json.dumps(report, indent=2, default=str))
    lines = [
        f"# {scene['name']}",
        "",
        f"- input: `{path}`",
        f"- model: `{model_path}` ({meta.model})",
        f"- {evaluation_sentence(evaluation)}",
        f"- map: `{map_path.name}` ({size[0]} x {size[1]} px, {crs})",
        *(
            [f"- after the minimum mapping unit ({made['mmu']['mmu']}): `{Path(made['final']).name}`"]
            if made["mmu"]
            else []
        ),
        *([f"- polygons: `{Path(made['polygons']['path']).name}`"] if made["polygons"] else []),
        f"- mapped in {res['seconds']:.2f} s ({res['mpx_per_s']:.3g} Mpx/s)",
        "",
    ]
    if problem:
        from pipeline.report.format import md_text

        lines[-1:-1] = [f"- **Warning**: {md_text(problem)}"]
    if areas:
        lines += [f"Class areas of `{Path(made['final']).name}`:", "", *_area_lines(areas)]
    write_text(odir / f"{scene['name']}.md", "\n".join(lines) + "\n")
    stac_item = _scene_item(scene["name"], odir, map_path, conf_path, made, meta, model_path) if opts.stac else None
    (odir / f"{scene['name']}.failed.json").unlink(missing_ok=True)
    logger.info("mapped %s -> %s", path, map_path)
    return {
        **scene,
        "status": "mapped",
        "map": str(map_path),
        "report": str(odir / f"{scene['name']}.json"),
        "stac_item": stac_item,
        "seconds": report["seconds"],
        "warning": problem,
    }


def _scene_item(name: str, odir: Path, map_path: Path, conf_path: Path, made: dict, meta: Any, model_path: str) -> str:
    """Write the STAC Item of a mapped scene, ``<scene>.stac.json``, validated offline; returns its path.
    :func:`finish_cycle` adds it to the outbox's catalog."""
    from pipeline.inputs.class_table import ClassTable
    from pipeline.mapping.stac import MapFiles, MapLinks, map_item, sidecar_assets, write_item

    mmu_map = Path(made["final"]) if made["mmu"] else None
    files = MapFiles(
        map=map_path,
        confidence=conf_path,
        mmu_map=mmu_map,
        mmu=made["mmu"]["mmu"] if made["mmu"] else None,
        polygons=Path(made["polygons"]["path"]) if made["polygons"] else None,
        extra=sidecar_assets(map_path, conf_path, mmu_map),
    )
    links = MapLinks(report=odir / f"{name}.md", metrics=odir / f"{name}.json", model=Path(model_path))
    item = map_item(
        name,
        files,
        ClassTable.from_meta(meta),
        links,
        title=f"land-cover map of {name}",
        properties={"landcover:model": meta.model},
    )
    return str(write_item(item, odir / f"{name}.stac.json"))


# ----------------------------------------------------------------------------- cycle end
class CycleFailed(Exception):
    """A cycle in which at least one scene failed (the others were mapped): the batch-map flow
    run ends Failed with this as its result; ``summary`` is what :func:`finish_cycle` returned."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> tuple:  # results cross processes pickled: keep the summary
        return (CycleFailed, (str(self), self.summary))


def cycle_failure(summary: dict) -> CycleFailed | None:
    """The :class:`CycleFailed` of a cycle summary in which a scene failed, else None."""
    failed = summary.get("failed") or []
    if not failed:
        return None
    first = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return CycleFailed(
        f"{len(failed)} of {len(failed) + len(summary.get('mapped') or [])} scene(s) failed: "
        f"{first['input']}: {first.get('error')}{more}",
        summary,
    )


def finish_cycle(plan: dict, results: list[dict]) -> dict:
    """Record every scene in the state file, write failure files and the cycle report.

    A cycle that found nothing to map (an empty inbox, files still settling) writes nothing:
    a schedule every minute must not leave two report files a minute. Its summary has
    ``cycle_report`` None.
    """
    from pipeline.report.format import md_text
    from pipeline.runner.promotion import evaluation_sentence

    out = Path(plan["outbox"])
    now = dt.datetime.now(dt.UTC)
    if not results:
        return {
            "started": plan["started"],
            "finished": now.isoformat(timespec="seconds"),
            "model": plan["model_path"],
            "model_run": (plan.get("model_evaluation") or {}).get("run_id"),
            "seen": plan["seen"],
            "settling": plan["settling"],
            "mapped": [],
            "failed": [],
            "cycle_report": None,
        }
    for r in results:
        if r["status"] == "failed":
            write_json(
                out / r["name"] / f"{r['name']}.failed.json",
                {"input": r["path"], "error": r.get("error"), "at": now.isoformat(timespec="seconds")},
            )
    state_path = Path(plan["state_file"])
    state = read_state(state_path)  # re-read: keep what another cycle may have added
    for r in results:
        state["processed"][r["key"]] = {
            "path": r["path"],
            "status": r["status"],
            "at": now.isoformat(timespec="seconds"),
            **({"map": r["map"]} if r.get("map") else {}),
            **({"error": r["error"]} if r.get("error") else {}),
        }
    write_json(state_path, state)
    mapped = [r for r in results if r["status"] == "mapped"]
    failed = [r for r in results if r["status"] == "failed"]
    summary = {
        "started": plan["started"],
        "finished": now.isoformat(timespec="seconds"),
        "model": plan["model_path"],
        "model_run": (plan.get("model_evaluation") or {}).get("run_id"),
        "model_evaluation": plan.get("model_evaluation"),
        "seen": plan["seen"],
        "settling": plan["settling"],
        "mapped": [
            {"input": r["path"], "map": r["map"], "report": r["report"], "warning": r.get("warning")} for r in mapped
        ],
        "failed": [{"input": r["path"], "error": r.get("error")} for r in failed],
    }
    # A scene mapped despite a clear warning (values in other units) must not read as a plain
    # success in the cycle report an operator looks at.
    warned = [r for r in mapped if r.get("warning")]
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    write_json(out / "cycles" / f"{stamp}.json", summary)
    md = [
        f"# Batch mapping cycle {stamp}",
        "",
        f"Model: `{plan['model_path']}`",
        "",
        *([evaluation_sentence(plan["model_evaluation"]), ""] if plan.get("model_evaluation") else []),
        f"{len(mapped)} mapped ({len(warned)} with a warning), {len(failed)} failed, {plan['seen']} seen, "
        f"{plan['settling']} still settling.",
        "",
    ]
    md += [
        f"- mapped `{r['path']}` -> `{r['map']}`"
        + (f" **with a warning**: {md_text(r['warning'])}" if r.get("warning") else "")
        for r in mapped
    ]
    md += [f"- FAILED `{r['path']}`: {r.get('error')}" for r in failed]
    write_text(out / "cycles" / f"{stamp}.md", "\n".join(md) + "\n")
    summary["cycle_report"] = str(out / "cycles" / f"{stamp}.json")
    items = [r["stac_item"] for r in mapped if r.get("stac_item")]
    if items:
        from pipeline.mapping.stac import add_to_catalog

        try:  # the maps are what matters: a catalog that cannot be updated is a warning, not a failed cycle
            summary["stac_catalog"] = str(
                add_to_catalog(out / "catalog.json", [Path(p) for p in items], "Land-cover maps", "Maps made by serve")
            )
        except Exception as e:  # noqa: BLE001
            log.warning("%s: the STAC catalog was not updated (%s)", out / "catalog.json", e)
    return summary
