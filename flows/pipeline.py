"""The pipeline as Prefect flows.

``landcover_pipeline`` (what ``landcover run`` and ``landcover demo`` invoke) runs four
sub-flows: ``prepare``, ``train_and_compare`` (one task per model, fanned out through the
task runner), ``map_scenes`` (one task per model and scene) and ``assess_and_report``.
Every task wraps one ``pipeline.run`` stage function and exchanges only small records
(run directory, stage name, model, fingerprint, output paths): arrays, models and rasters
go to files in the run directory.

Caching happens at two levels, both keyed by :func:`pipeline.run.stage_key` (config parts
a stage reads, SHA-256 of the input files, fingerprints of the upstream stages):

1. In the run directory (``stages/<stage>[-model].json``): a resumed run skips every stage
   whose record has the same key and whose outputs exist.
2. Across run directories, a content-addressed stage store under
   ``<output dir>/.stage-cache/<stage>[-model]/<key>/`` holding hard links (copies where
   links are impossible) of a finished stage's output files and its record. A new run of
   an unchanged config restores each stage's outputs from there instead of computing them.
   The store key also includes a fingerprint of the ``pipeline`` package's source, so a
   code change recomputes. The report is not stored: it is a page about *this* run
   (run directory, times, this run's stage table), so a new run directory re-renders it.

Prefect's own result persistence is not used for this: the store must hold files, not
pickled return values, and a hit must be refused when its files are gone or changed.

``batch_map`` is the flow that ``landcover serve`` deploys (see :mod:`flows.serve`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline import run as R
from pipeline.config import load_config, parse_config
from pipeline.errors import InputError

log = logging.getLogger("landcover")

STORE_DIR = ".stage-cache"
CROSS_RUN_STAGES = ("prepare", "train", "map", "assess")  # report is about one run: never shared
IO_RETRIES = 2
IO_RETRY_DELAY = 2.0


# ----------------------------------------------------------------------------- small records
def make_ref(ctx: R.RunContext) -> dict:
    """The small, picklable description of a run that tasks receive instead of a RunContext."""
    return {"run_dir": str(Path(ctx.run_dir).resolve()), "base_dir": str(Path(ctx.base_dir).resolve()),
            "device": ctx.device, "progress": ctx.progress, "inputs": ctx.hash_inputs()}


def ctx_from_ref(ref: dict) -> R.RunContext:
    """Rebuild the RunContext from the run directory's config.yaml (in any process)."""
    run_dir = Path(ref["run_dir"])
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = parse_config(raw, str(run_dir / "config.yaml"))
    ctx = R.RunContext(cfg=cfg, run_dir=run_dir, base_dir=Path(ref["base_dir"]), device=ref["device"],
                       progress=ref["progress"])
    ctx.inputs = dict(ref.get("inputs") or {})
    return ctx


def _stage_name(stage: str, model: str | None) -> str:
    return f"{stage}:{model}" if model else stage


# ----------------------------------------------------------------------------- run.log
_log_lock = threading.Lock()
_log_users: dict[str, list] = {}  # path -> [handler, users]


def _has_file_handler(path: str) -> bool:
    for lg in (logging.getLogger(), log):
        for h in lg.handlers:
            if isinstance(h, logging.FileHandler) and os.path.abspath(h.baseFilename) == path:
                return True
    return False


@contextmanager
def run_log(run_dir: str | Path):
    """Send ``landcover`` and Prefect run logs to ``<run_dir>/run.log`` in this process.

    The CLI adds the handler itself; this covers tasks on Dask workers and deployment runs.
    """
    path = os.path.abspath(Path(run_dir) / "run.log")
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)  # Prefect's logging setup leaves the root logger at WARNING
    with _log_lock:
        entry = _log_users.get(path)
        if entry is None and _has_file_handler(path):
            entry = None
            own = False
        else:
            own = True
            if entry is None:
                h = logging.FileHandler(path)
                h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
                logging.getLogger().addHandler(h)
                entry = _log_users[path] = [h, 0]
            entry[1] += 1
    try:
        yield
    finally:
        if own:
            with _log_lock:
                entry[1] -= 1
                if entry[1] == 0:
                    logging.getLogger().removeHandler(entry[0])
                    entry[0].close()
                    del _log_users[path]


# ----------------------------------------------------------------------------- stage store
NOT_STAGE_CODE = {"cli.py"}  # modules no stage runs: editing them keeps the store valid


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the ``pipeline`` package's Python source: a code change invalidates the store."""
    root = Path(R.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        if p.name in NOT_STAGE_CODE:
            continue
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def stage_files(ctx: R.RunContext, stage: str, model: str | None, rec: dict) -> list[str]:
    """Every file a finished stage produced (its declared outputs plus undeclared by-products)."""
    files = list(rec.get("outputs", []))
    if stage == "train" and model:
        files += [f"curves/{model}{s}" for s in (".json", ".png") if (ctx.run_dir / "curves" / f"{model}{s}").exists()]
    return files


def store_entry(ctx: R.RunContext, stage: str, model: str | None, key: str) -> Path:
    skey = R._fingerprint("store", key, code_fingerprint())
    return ctx.run_dir.parent / STORE_DIR / f"{stage}{'-' + model if model else ''}" / skey


def _link_or_copy(src: Path, dst: Path) -> None:
    """Place ``src`` at ``dst`` atomically: hard link where possible, else copy (temporary name, rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def store_publish(ctx: R.RunContext, stage: str, model: str | None, rec: dict) -> Path | None:
    """Put a finished stage's files and record into the store (atomically: build, then rename)."""
    if stage not in CROSS_RUN_STAGES:
        return None
    entry = store_entry(ctx, stage, model, rec["key"])
    if (entry / "record.json").exists():
        return entry
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    files = {}
    for rel in stage_files(ctx, stage, model, rec):
        dst = tmp / "files" / rel
        _link_or_copy(ctx.run_dir / rel, dst)
        st = dst.stat()
        files[rel] = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    clean = {k: v for k, v in rec.items() if k not in ("cached", "source", "name")}
    R.write_json(tmp / "record.json", {"record": clean, "files": files, "from_run": ctx.run_dir.name,
                                       "code": code_fingerprint()})
    try:
        os.rename(tmp, entry)
    except OSError:  # another process published the same key first
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def store_restore(ctx: R.RunContext, stage: str, model: str | None) -> dict | None:
    """Restore a stage's outputs from the store into this run directory; None on a miss.

    A hit whose files are missing or changed (size or mtime) is refused, so the stage re-runs.
    The stage record is written last, so an interrupted restore is simply redone.
    """
    if stage not in CROSS_RUN_STAGES:
        return None
    key = R.stage_key(ctx, stage, model)
    entry = store_entry(ctx, stage, model, key)
    meta_path = entry / "record.json"
    if not meta_path.exists():
        return None
    try:
        meta = R.read_json(meta_path)
        rec = meta["record"]
        if rec.get("key") != key:
            return None
        for rel, want in meta["files"].items():
            st = (entry / "files" / rel).stat()
            if st.st_size != want["bytes"] or st.st_mtime_ns != want["mtime_ns"]:
                log.warning("stage store entry %s: %s changed since it was stored; recomputing", entry, rel)
                return None
        for rel in meta["files"]:
            _link_or_copy(entry / "files" / rel, ctx.run_dir / rel)
    except (OSError, KeyError, ValueError) as e:
        log.warning("stage store entry %s unusable (%s); recomputing", entry, e)
        return None
    R.write_json(R._stage_file(ctx, stage, model), rec)
    return {**rec, "from_run": meta.get("from_run")}


# ----------------------------------------------------------------------------- tasks
def not_input_error(task_, task_run, state) -> bool:
    """retry_condition_fn: retry transient failures (I/O), never bad input nor a model's own error
    (a fit that raised will raise again: retrying would only triple its cost)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001 - the result may itself fail to load
        exc = e
    return isinstance(exc, OSError) and not isinstance(exc, InputError)


_STAGE_FNS = {
    "prepare": lambda ctx, m: R.stage_prepare(ctx),
    "train": lambda ctx, m: R.stage_train(ctx, m),
    "map": lambda ctx, m: R.stage_map(ctx, m),
    "assess": lambda ctx, m: R.stage_assess(ctx),
    "report": lambda ctx, m: R.stage_report(ctx),
}


def execute_stage(ref: dict, stage: str, model: str | None = None, logger=None) -> dict:
    """Run one stage with both cache levels. Plain function (no Prefect needed).

    Returns a small record: name, stage, model, key, outputs, seconds, cached, source
    (``"run"``: this run directory already had it, ``"store"``: restored from the stage
    store, ``None``: computed).
    """
    logger = logger or log
    ctx = ctx_from_ref(ref)
    name = _stage_name(stage, model)
    t0 = time.perf_counter()
    rec = R.cached_stage(ctx, stage, model)
    source = "run" if rec is not None else None
    if rec is None:
        rec = store_restore(ctx, stage, model)
        source = "store" if rec is not None else None
    if rec is None:
        logger.info("stage %s: running", name)
        rec = R.run_stage(ctx, stage, lambda c: _STAGE_FNS[stage](c, model), model, use_cache=False)
        store_publish(ctx, stage, model, rec)
        logger.info("stage %s: done in %.2f s", name, rec["seconds"])
    else:
        rec = {**rec, "cached": True, "seconds": time.perf_counter() - t0}
        logger.info("stage %s: unchanged, reused from %s (%.2f s)", name,
                    "this run directory" if source == "run" else f"the stage store (run {rec.get('from_run')})",
                    rec["seconds"])
    keep = ("stage", "model", "key", "outputs", "seconds", "cached")
    return {"name": name, **{k: rec.get(k) for k in keep}, "source": source, "pid": os.getpid()}


@task(name="stage", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY, retry_condition_fn=not_input_error,
      cache_policy=NO_CACHE, task_run_name="{stage}-{model}")
def stage_task(ref: dict, stage: str, model: str | None = None) -> dict:
    """One pipeline stage (for one model). Retries I/O failures twice; bad input fails at once."""
    with run_log(ref["run_dir"]):
        return execute_stage(ref, stage, model, logger=get_run_logger())


# ----------------------------------------------------------------------------- task runners
def _cpus() -> int:
    return max(1, os.cpu_count() or 1)


def make_task_runner(dask_address: str | None, max_workers: int):
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=max(1, max_workers))


def _collect(futures: list, what: str) -> list[dict]:
    """Wait for every future (so one failure does not orphan the others), then raise the first failure."""
    for f in futures:
        f.wait()
    failed = [f for f in futures if not f.state.is_completed()]
    if failed:
        get_run_logger().error("%s: %d of %d tasks failed: %s", what, len(failed), len(futures),
                               "; ".join(str(f.state.message) for f in failed))
        failed[0].result()  # raises the task's exception
    return [f.result() for f in futures]


# ----------------------------------------------------------------------------- sub-flows
@flow(name="prepare", log_prints=False)
def prepare(ref: dict) -> dict:
    """Ingest labels, tile patches, spatial split."""
    return _collect([stage_task.submit(ref, "prepare")], "prepare")[0]


def _task_exception(future) -> BaseException:
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
        f.wait()
        if f.state.is_completed():
            out.append(f.result())
            continue
        ctx = ctx or ctx_from_ref(ref)
        R.record_failure(ctx, stage, m, _task_exception(f))
    return out


@flow(name="train_and_compare")
def train_and_compare(ref: dict, models: list[str]) -> list[dict]:
    """Fit every model (one task per model, fanned out through the flow's task runner).
    A model whose fit raises is recorded as failed; the others go on."""
    ctx = ctx_from_ref(ref)
    for m in models:
        R.clear_failure(ctx, m)
    return _collect_models(ref, [stage_task.submit(ref, "train", m) for m in models], models, "train")


@flow(name="map_scenes")
def map_scenes(ref: dict, models: list[str]) -> list[dict]:
    """Map the scene with every model that trained (one task per model and scene)."""
    return _collect_models(ref, [stage_task.submit(ref, "map", m) for m in models], models, "map")


@flow(name="assess_and_report")
def assess_and_report(ref: dict, started: str, done: list[dict], extra: dict) -> list[dict]:
    """metrics.json, then (after a provisional manifest.json the report shows) the report."""
    assess = _collect([stage_task.submit(ref, "assess")], "assess")[0]
    ctx = ctx_from_ref(ref)
    R.write_manifest(ctx, started, done + [assess], extra)
    report = _collect([stage_task.submit(ref, "report")], "report")[0]
    try:
        from pipeline.report import publish_artifacts

        publish_artifacts(ctx.run_dir)
    except ImportError:
        pass
    return [assess, report]


def _api_settings(dask_address: str | None):
    """Tasks on Dask workers must report to this flow's API; in ephemeral mode that is a
    temporary server the workers do not know about, so hand its URL to their settings."""
    if not dask_address:
        return nullcontext()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        return nullcontext()
    fctx = FlowRunContext.get()
    url = str(fctx.client.api_url) if fctx and fctx.client else None
    return temporary_settings(updates={PREFECT_API_URL: url}) if url else nullcontext()


@flow(name="landcover-pipeline")
def landcover_pipeline(config_path: str, models: list[str] | None = None, overrides: list[str] | None = None,
                       out: str | None = None, run_id: str | None = None, resume: bool = False,
                       device: str | None = None, progress: bool = False,
                       dask_address: str | None = None) -> str:
    """End to end: prepare, train and compare, map, assess and report. Returns the run directory.

    Parameters mirror ``landcover run`` (``resume=True`` with ``run_id`` continues that run).
    """
    t_flow = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    cfg, base_dir = load_config(config_path, overrides or [], models)
    ctx = R.init_run_dir(cfg, base_dir, out=Path(out) if out else None, run_id=run_id, resume=resume,
                         device=device, progress=progress)
    with run_log(ctx.run_dir):
        logger = get_run_logger()
        fctx = FlowRunContext.get()
        flow_run_id = str(fctx.flow_run.id) if fctx and fctx.flow_run else None
        logger.info("run directory %s (flow run %s)", ctx.run_dir, flow_run_id)
        ref = make_ref(ctx)
        enabled = cfg.models.enabled()
        n_train = min(2, _cpus(), len(enabled))
        n_map = min(len(enabled), max(1, _cpus() // max(1, cfg.mapping.workers)))
        runner_name = f"dask:{dask_address}" if dask_address else f"threads(train={n_train}, map={n_map})"
        extra = {"prefect_flow_run_id": flow_run_id, "task_runner": runner_name, "stage_sources": {}}
        with _api_settings(dask_address):
            stages = [prepare.with_options(task_runner=make_task_runner(dask_address, 1))(ref)]
            trained = train_and_compare.with_options(task_runner=make_task_runner(dask_address, n_train))(ref, enabled)
            stages += trained
            ok = [m for m in enabled if any(s["model"] == m for s in trained)]
            stages += map_scenes.with_options(task_runner=make_task_runner(dask_address, n_map))(ref, ok)
            stages += assess_and_report.with_options(task_runner=make_task_runner(dask_address, 1))(
                ref, started, stages, extra)
        extra["stage_sources"] = {s["name"]: s["source"] for s in stages}
        extra["stage_workers"] = {s["name"]: s["pid"] for s in stages}  # process ids: where each stage ran
        extra["flow_seconds"] = round(time.perf_counter() - t_flow, 3)
        R.write_manifest(ctx, started, stages, extra)
        n_cached = sum(bool(s["cached"]) for s in stages)
        logger.info("finished: %d of %d stages reused, %.1f s", n_cached, len(stages), extra["flow_seconds"])
    return str(ctx.run_dir)


# ----------------------------------------------------------------------------- batch mapping
@task(name="map-scene", retries=IO_RETRIES, retry_delay_seconds=IO_RETRY_DELAY, retry_condition_fn=not_input_error,
      cache_policy=NO_CACHE, task_run_name="map-{scene[name]}")
def map_scene_task(scene: dict, model_path: str, outbox: str, window_size: int, workers: int) -> dict:
    """Map one dropped-in raster with the registered model; writes the map and its report."""
    from flows.serve import map_one_scene

    return map_one_scene(scene, model_path, outbox, window_size, workers, logger=get_run_logger())


@flow(name="batch-map")
def batch_map(config_path: str, inbox: str | None = None, outbox: str | None = None, model: str | None = None,
              rasters: list[str] | None = None, state_file: str | None = None, runs_dir: str | None = None,
              settle_seconds: float = 10.0, retry_failed: bool = False, dask_address: str | None = None) -> dict:
    """One cycle of scheduled mapping: map every new raster in the inbox (and ``rasters``)
    with the registered model, write maps and reports to the outbox, record what was done.
    A scene that fails is reported with its error; the others are still mapped."""
    from flows import serve as S

    logger = get_run_logger()
    plan = S.plan_cycle(config_path, inbox, outbox, model, rasters, state_file, runs_dir, settle_seconds, retry_failed)
    logger.info("model %s; %d new scene(s) of %d seen", plan["model_path"], len(plan["todo"]), plan["seen"])
    results: list[dict] = []
    if plan["todo"]:
        runner = make_task_runner(dask_address, 1)
        with _api_settings(dask_address):
            sub = _map_batch.with_options(task_runner=runner)
            results = sub(plan["todo"], plan["model_path"], plan["outbox"], plan["window_size"], plan["workers"])
    summary = S.finish_cycle(plan, results)
    for r in results:
        if r["status"] == "failed":
            logger.error("scene %s failed: %s", r["path"], r["error"])
        else:
            logger.info("scene %s mapped: %s", r["path"], r["map"])
    return summary


@flow(name="map-batch")
def _map_batch(scenes: list[dict], model_path: str, outbox: str, window_size: int, workers: int) -> list[dict]:
    futs = [map_scene_task.submit(s, model_path, outbox, window_size, workers) for s in scenes]
    out = []
    for s, f in zip(scenes, futs):
        f.wait()
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
