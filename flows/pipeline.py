"""The pipeline as Prefect flows.

``landcover_pipeline`` (what ``landcover run`` and ``landcover demo`` invoke) runs four
sub-flows: ``prepare``, ``train_and_compare`` (one task per model and fit: each fold of the
split, the refit on all labelled data, the random contrast; fanned out through the task runner,
deep models one fit at a time unless on a Dask cluster; then one task per model pooling its
fits), ``map_scenes`` (one task per model and scene) and ``assess_and_report``.
Every task runs one stage through :func:`pipeline.runner.pipeline.run_one` and exchanges only small
records (run directory, stage name, model, fingerprint, output paths): arrays, models and
rasters go to files in the run directory.

Caching is the library's (:mod:`pipeline.runner.store`), the same as for
:func:`pipeline.runner.pipeline.run_pipeline`: stage records in the run directory, then the
content-checked cross-run stage store under ``<output dir>/.stage-cache/``. Prefect's own
result persistence is not used for this: the store must hold files, not pickled return
values, and a hit must be refused when its files are gone or changed.

The scheduled batch mapping flow (``landcover serve``) is in :mod:`flows.serve`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture

from flows.engine import (
    IO_RETRIES,
    IO_RETRY_DELAY,
    api_settings,
    collect,
    cpus,
    logs_to_api,
    make_task_runner,
    not_input_error,
    run_log,
    run_tags,
    stage_run_name,
    stage_tags,
    sub_flow_run_name,
    tag_this_flow_run,
    wait_for,
)
from pipeline.config.loading import load_config
from pipeline.core.errors import OutOfSpaceError
from pipeline.models import registry
from pipeline.runner.context import RunContext, init_run_dir, new_run_id
from pipeline.runner.failures import clear_failure, record_failure
from pipeline.runner.manifest import reuse_summary, write_manifest
from pipeline.runner.pipeline import run_one
from pipeline.runner.stages.fit import fit_parts

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- tasks
def execute_stage(ref: dict, stage: str, model: str | None = None, logger: Any = None) -> dict:
    """Run one stage with both cache levels in any process. Plain function (no Prefect needed).

    Returns a small record: name, stage, model, key, outputs, seconds, cached, source
    (``"run"``, ``"store"`` or ``None``: see :func:`pipeline.runner.store.execute_stage`) and pid.
    """
    rec = run_one(RunContext.from_ref(ref), stage, model, logger=logger or log)
    keep = ("stage", "model", "key", "outputs", "seconds", "cached")
    return {"name": rec["name"], **{k: rec.get(k) for k in keep}, "source": rec["source"], "pid": os.getpid()}


@task(
    name="stage",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAY,
    retry_condition_fn=not_input_error,
    cache_policy=NO_CACHE,
    # Prefect's protocol for a name callback that takes the parameters also lists the classmethod
    # Prefect uses to recognise one, which no plain function has (mypy: arg-type).
    task_run_name=stage_run_name,  # type: ignore[arg-type]
)
def stage_task(ref: dict, stage: str, model: str | None = None) -> dict:
    """One pipeline stage (for one model). Retries I/O failures twice; bad input fails at once."""
    with run_log(ref["run_dir"]), logs_to_api():
        return execute_stage(ref, stage, model, logger=get_run_logger())


def submit_stage(ref: dict, stage: str, model: str | None = None) -> PrefectFuture:
    """Submit one stage task to the flow's task runner, tagged with its stage and model (and, from
    the caller's ``prefect.tags``, its run)."""
    return stage_task.with_options(tags=stage_tags(stage, model)).submit(ref, stage, model)


# ----------------------------------------------------------------------------- sub-flows
@flow(name="prepare", flow_run_name=sub_flow_run_name, log_prints=False)
def prepare(ref: dict) -> dict:
    """Ingest labels, tile patches, spatial split."""
    return collect([submit_stage(ref, "prepare")], "prepare")[0]


def _task_exception(future: PrefectFuture) -> BaseException:
    try:
        exc = future.state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - the result may itself fail to load
        exc = e
    return exc if isinstance(exc, BaseException) else RuntimeError(str(future.state.message))


def _collect_models(ref: dict, futures: list, models: list[str], stage: str) -> list[dict]:
    """Wait for every model's task; record a failed one (``failed/<model>.json``) and go on with the others."""
    ctx = None
    out = []
    for f, m in zip(futures, models):
        wait_for(f)
        if f.state.is_completed():
            out.append(f.result())
            continue
        exc = _task_exception(f)
        if isinstance(exc, OutOfSpaceError):
            raise exc  # a full disk is not one model's failure: every later write would fail too
        ctx = ctx or RunContext.from_ref(ref)
        record_failure(ctx, stage, m, exc)
    return out


def _failed(future: PrefectFuture) -> BaseException | None:
    """The exception of a finished task that failed, else None."""
    return None if future.state.is_completed() else _task_exception(future)


def _submit_fits(ref: dict, models: list[str], parts: list[str], fan_out_deep: bool) -> dict[str, list]:
    """Submit every fit of every model (``parts``: the folds, the refit, the random contrast; each
    a task of its own); returns ``{model: [future per part submitted]}``.

    Classical models' fits fan out over the task runner's workers. Deep models' fits run one at
    a time (unless ``fan_out_deep``: on a Dask cluster, whose workers are separate processes or
    machines of the user's choosing): the first is submitted at once (the longest tasks start
    early, beside the classical fits), each next one only after the previous has finished. Why not
    two at once on one machine: on a CPU, torch already spreads each batch's convolutions over
    every core, so a second network at the same time only halves each one's share of the cores,
    while its batches, activations, gradients and optimizer state add to the memory of the first;
    on a CUDA device, one model at a time is what a single GPU wants too. A memory-based limit
    (two at once when both fit) would buy nothing on the CPU and needs a footprint estimate per
    architecture that can be wrong. A deep model whose fit failed skips its remaining fits but does
    not stop the next model; a full disk stops the chain (every later write would fail too;
    :func:`_collect_fits` raises it).
    """
    deep = [m for m in models if registry.get(m).deep]
    futures: dict[str, list] = {m: [] for m in models}
    chain = [(m, p) for m in deep for p in parts]
    if fan_out_deep:
        for m, p in chain:
            futures[m].append(submit_stage(ref, p, m))
        chain = []
    elif chain:
        futures[chain[0][0]].append(submit_stage(ref, chain[0][1], chain[0][0]))
    for m in models:
        if m not in deep:
            futures[m] = [submit_stage(ref, p, m) for p in parts]
    prev = futures[chain[0][0]][-1] if chain else None
    for m, p in chain[1:]:
        assert prev is not None
        wait_for(prev)
        if isinstance(_failed(prev), OutOfSpaceError):
            break
        if any(not f.state.is_completed() for f in futures[m] if f.state.is_final()):
            continue  # this model already failed a fit: its other fits are not worth their cost
        prev = submit_stage(ref, p, m)
        futures[m].append(prev)
    return futures


def _collect_fits(ref: dict, futures: dict[str, list]) -> list[str]:
    """Wait for every model's fits; a model with a failed fit is recorded as failed in ``train``
    (``failed/<model>.json``) and left out. Returns the models whose fits all succeeded."""
    ctx = None
    ok = []
    for m, futs in futures.items():
        for f in futs:
            wait_for(f)
        exc = next((e for e in map(_failed, futs) if e is not None), None)
        if exc is None and futs:
            ok.append(m)
            continue
        if isinstance(exc, OutOfSpaceError):
            raise exc  # a full disk is not one model's failure: every later write would fail too
        ctx = ctx or RunContext.from_ref(ref)
        record_failure(ctx, "train", m, exc or RuntimeError("its fits were not run (a full disk stopped them)"))
    return ok


@flow(name="train_and_compare", flow_run_name=sub_flow_run_name)
def train_and_compare(ref: dict, models: list[str], fan_out_deep: bool = False) -> list[dict]:
    """Fit every model: one task per model and fit (each fold of the split, the refit on all
    labelled data, the random contrast) through the flow's task runner, classical models in
    parallel, deep models one fit at a time (:func:`_submit_fits`); then one ``train`` task per
    model pools its fits. A model whose fit raises is recorded as failed; the others go on."""
    ctx = RunContext.from_ref(ref)
    for m in models:
        clear_failure(ctx, m)
    parts = fit_parts(ctx)
    fits = _submit_fits(ref, models, parts, fan_out_deep)
    ok = _collect_fits(ref, fits)
    done = [r for m in models for f in fits[m] if f.state.is_completed() for r in [f.result()]]
    pooled = _collect_models(ref, [submit_stage(ref, "train", m) for m in ok], ok, "train")
    return done + pooled


@flow(name="map_scenes", flow_run_name=sub_flow_run_name)
def map_scenes(ref: dict, models: list[str]) -> list[dict]:
    """Map the scene with every model that trained (one task per model and scene)."""
    return _collect_models(ref, [submit_stage(ref, "map", m) for m in models], models, "map")


@flow(name="assess_and_report", flow_run_name=sub_flow_run_name)
def assess_and_report(ref: dict, started: str, done: list[dict], extra: dict) -> list[dict]:
    """metrics.json, then (after a provisional manifest.json the report shows) the report."""
    assess = collect([submit_stage(ref, "assess")], "assess")[0]
    ctx = RunContext.from_ref(ref)
    write_manifest(ctx, started, done + [assess], extra)
    report = collect([submit_stage(ref, "report")], "report")[0]
    from pipeline.report.artifacts import publish_artifacts

    publish_artifacts(ctx.run_dir)
    return [assess, report]


def pipeline_run_name() -> str:
    """Flow run name of ``landcover-pipeline``: the run id, i.e. the run directory's name.

    Given as ``run_id`` (the CLI always does), or new: ``<config name>-<time>-<config hash>``, as
    :func:`pipeline.runner.context.new_run_id` names a run directory; the flow then uses this
    name for its directory (:func:`landcover_pipeline`). A config that does not load gives a
    placeholder: the flow fails on it at once with the config's own error.
    """
    from prefect.runtime import flow_run

    p = flow_run.parameters
    if p.get("run_id"):
        return str(p["run_id"])
    try:
        cfg, _ = load_config(p["config_path"], p.get("overrides") or [], p.get("models"))
    except Exception:  # noqa: BLE001 - reported by the flow itself, with its one-line message
        return f"{Path(str(p.get('config_path', 'run'))).stem}-config-error"
    return new_run_id(cfg)


def _this_flow_run_name() -> str | None:
    fctx = FlowRunContext.get()
    return fctx.flow_run.name if fctx and fctx.flow_run else None


@flow(name="landcover-pipeline", flow_run_name=pipeline_run_name)
def landcover_pipeline(
    config_path: str,
    models: list[str] | None = None,
    overrides: list[str] | None = None,
    out: str | None = None,
    run_id: str | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = False,
    dask_address: str | None = None,
) -> str:
    """End to end: prepare, train and compare, map, assess and report. Returns the run directory.

    Parameters mirror ``landcover run`` (``resume=True`` with ``run_id`` continues that run).
    The flow run is named after the run id (:func:`pipeline_run_name`) and tagged ``run:<run id>``,
    as are its sub-flows and tasks (which add ``stage:`` and ``model:`` tags); the pipeline's own
    warnings and errors are logs of these runs in the Prefect API (:func:`flows.engine.logs_to_api`).
    """
    t_flow = time.perf_counter()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    cfg, base_dir = load_config(config_path, overrides or [], models)
    if run_id is None and not resume:
        run_id = _this_flow_run_name()  # pipeline_run_name made it a new run id
    ctx = init_run_dir(
        cfg, base_dir, out=Path(out) if out else None, run_id=run_id, resume=resume, device=device, progress=progress
    )
    # ctx: the run directory's lock, given back at the end
    with ctx, run_log(ctx.run_dir), logs_to_api(), tags(*run_tags(ctx.run_dir.name)):
        tag_this_flow_run(run_tags(ctx.run_dir.name))
        logger = get_run_logger()
        fctx = FlowRunContext.get()
        flow_run_id = str(fctx.flow_run.id) if fctx and fctx.flow_run else None
        logger.info("run directory %s (flow run %s)", ctx.run_dir, flow_run_id)
        ref = ctx.to_ref()
        enabled = cfg.models.enabled()
        n_train = min(2, cpus())  # fit tasks: k folds + refit (+ random contrast) per model
        n_map = min(len(enabled), max(1, cpus() // max(1, cfg.mapping.workers)))
        runner_name = (
            f"dask:{dask_address}" if dask_address else f"threads(train={n_train}, deep one at a time, map={n_map})"
        )
        extra: dict[str, Any] = {
            "engine": "prefect",
            "prefect_flow_run_id": flow_run_id,
            "task_runner": runner_name,
            "stage_sources": {},
        }
        with api_settings(dask_address):
            stages = [prepare.with_options(task_runner=make_task_runner(dask_address, 1))(ref)]
            trained = train_and_compare.with_options(task_runner=make_task_runner(dask_address, n_train))(
                ref, enabled, fan_out_deep=bool(dask_address)
            )
            stages += trained
            ok = [m for m in enabled if any(s["model"] == m and s["stage"] == "train" for s in trained)]
            stages += map_scenes.with_options(task_runner=make_task_runner(dask_address, n_map))(ref, ok)
            stages += assess_and_report.with_options(task_runner=make_task_runner(dask_address, 1))(
                ref, started, stages, extra
            )
        extra["stage_sources"] = {s["name"]: s["source"] for s in stages}
        extra["stage_workers"] = {s["name"]: s["pid"] for s in stages}  # process ids: where each stage ran
        extra["flow_seconds"] = round(time.perf_counter() - t_flow, 3)
        write_manifest(ctx, started, stages, extra)
        logger.info("%s", reuse_summary(stages, extra["flow_seconds"]))
    return str(ctx.run_dir)
