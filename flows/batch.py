"""The ``batch-map`` flow behind ``landcover serve``: one task per new scene.

The cycle itself (which scenes, which model, mapping one scene, state file and cycle
report) is library code in :mod:`pipeline.runner.batch`; this flow only runs each scene of a
cycle as a task (retried twice on I/O errors, never on bad input), on threads or a Dask
cluster, and keeps going when one scene fails.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.states import Failed, State

from flows.engine import (
    IO_RETRIES,
    IO_RETRY_DELAY,
    api_settings,
    logs_to_api,
    make_task_runner,
    not_input_error,
    tag_this_flow_run,
    wait_for,
)
from pipeline.runner import batch as B


def cycle_run_name() -> str:
    """Flow run name of a ``batch-map`` cycle: ``cycle-<UTC start time>``."""
    return f"cycle-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"


def _this_flow_run_name() -> str:
    """The name of the flow run in progress (the cycle's, for its sub-flow run)."""
    fctx = FlowRunContext.get()
    return fctx.flow_run.name if fctx is not None and fctx.flow_run is not None else cycle_run_name()


def model_tags(model_path: str, model_run: str | None = None) -> list[str]:
    """Tags of a cycle's runs: the model (``model:decision_tree``) and the run that trained it
    (``model-run:<run id>``: ``model_run``, the run whose evaluation backs the model, else the
    run directory of a model in ``<run>/models/``)."""
    p = Path(model_path)
    out = ["landcover", f"model:{p.name.split('.')[0]}"]
    if model_run is None and p.parent.name == "models":
        model_run = p.parent.parent.name
    if model_run:
        out.append(f"model-run:{model_run}")
    return out


# ----------------------------------------------------------------------------- the batch-map flow
@task(
    name="map-scene",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAY,
    retry_condition_fn=not_input_error,
    cache_policy=NO_CACHE,
    task_run_name="map-{scene[name]}",
)
def map_scene_task(
    scene: dict,
    model_path: str,
    outbox: str,
    window_size: int,
    workers: int,
    progress: bool = False,
    strict: bool = False,
    outputs: dict | None = None,
) -> dict:
    """Map one dropped-in raster with the registered model; writes the map and its report."""
    with logs_to_api():
        return B.map_one_scene(
            scene,
            model_path,
            outbox,
            window_size,
            workers,
            logger=get_run_logger(),
            progress=progress,
            strict=strict,
            outputs=outputs,
        )


@flow(name="batch-map", flow_run_name=cycle_run_name)
def batch_map(
    config_path: str,
    inbox: str | None = None,
    outbox: str | None = None,
    model: str | None = None,
    rasters: list[str] | None = None,
    state_file: str | None = None,
    runs_dir: str | None = None,
    settle_seconds: float = 10.0,
    retry_failed: bool = False,
    dask_address: str | None = None,
    progress: bool = False,
    strict: bool = False,
    allow_inconclusive: bool = False,
    max_pixels: int | None = None,
    allow_outside_inbox: bool = False,
) -> dict | State:
    """One cycle of scheduled mapping: map every new raster in the inbox (and ``rasters``)
    with the registered model, write maps and reports to the outbox, record what was done.
    A scene that fails is reported with its error; the others are still mapped, and the flow
    run ends Failed (calling the flow raises :class:`pipeline.runner.batch.CycleFailed`). With
    ``strict``, a scene whose values clearly differ from the training pixels fails. Without
    ``model``, the newest run's best model is promoted only on conclusive, leak-free evidence
    unless ``allow_inconclusive`` (:mod:`pipeline.runner.promotion`). ``max_pixels`` overrides the
    config's ``mapping.max_pixels``; inbox files that read outside the inbox fail unless
    ``allow_outside_inbox``. The flow run is named ``cycle-<UTC time>`` and tagged with the model
    and its run (:func:`model_tags`), its scenes' task runs ``scene:<name>``; the pipeline's own
    warnings and errors are logs of these runs in the Prefect API (:func:`flows.engine.logs_to_api`)."""
    with logs_to_api():
        logger = get_run_logger()
        plan = B.plan_cycle(
            config_path,
            inbox,
            outbox,
            model,
            rasters,
            state_file,
            runs_dir,
            settle_seconds,
            retry_failed,
            allow_inconclusive,
            max_pixels,
            allow_outside_inbox,
        )
        cycle_tags = model_tags(plan["model_path"], (plan.get("model_evaluation") or {}).get("run_id"))
        tag_this_flow_run(cycle_tags)
        logger.info("model %s; %d new scene(s) of %d seen", plan["model_path"], len(plan["todo"]), plan["seen"])
        results: list[dict] = []
        if plan["todo"]:
            runner = make_task_runner(dask_address, 1)
            with api_settings(dask_address), tags(*cycle_tags):
                sub = _map_batch.with_options(task_runner=runner, flow_run_name=_this_flow_run_name())
                results = sub(
                    plan["todo"],
                    plan["model_path"],
                    plan["outbox"],
                    plan["window_size"],
                    plan["workers"],
                    progress,
                    strict,
                    plan.get("outputs"),
                )
        summary = B.finish_cycle(plan, results)
        for r in results:
            if r["status"] == "failed":
                logger.error("scene %s failed: %s", r["path"], r["error"])
            else:
                logger.info("scene %s mapped: %s", r["path"], r["map"])
        failure = B.cycle_failure(summary)
        if failure is not None:
            # A cycle with a failed scene is a Failed flow run (the UI, alerts and `prefect
            # flow-run ls` see it), its result the CycleFailed that carries the summary.
            return Failed(message=str(failure), data=failure)
        return summary


@flow(name="map-batch")
def _map_batch(
    scenes: list[dict],
    model_path: str,
    outbox: str,
    window_size: int,
    workers: int,
    progress: bool = False,
    strict: bool = False,
    outputs: dict | None = None,
) -> list[dict]:
    futs = [
        map_scene_task.with_options(tags={f"scene:{s['name']}"}).submit(
            s, model_path, outbox, window_size, workers, progress, strict, outputs
        )
        for s in scenes
    ]
    out = []
    for s, f in zip(scenes, futs):
        wait_for(f)
        if f.state.is_completed():
            out.append(f.result())
        else:
            try:
                f.result()
                err = str(f.state.message)
            except Exception as e:  # noqa: BLE001 - report any failure of one scene, keep going
                err = f"{type(e).__name__}: {e}"
            out.append({**s, "status": "failed", "error": err})
    return out
