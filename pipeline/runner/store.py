"""Stage keys, stage records and the cross-run stage store, shared by every runner.

Both :func:`pipeline.runner.pipeline.run_pipeline` (in-process) and the Prefect flow
(:mod:`flows.pipeline`) run a stage through :func:`execute_stage`, which reuses work at
two levels, both keyed by :func:`stage_key` (the config parts a stage reads, SHA-256 of
the input files, the keys of the upstream stages):

1. **The run directory** (``stages/<stage>[-model].json``): a resumed run skips every
   stage whose record has the same key and whose output files have the size and BLAKE2b
   digest recorded when the stage finished; a stage with a missing, truncated or altered
   output, or an unreadable record, is recomputed.
2. **The stage store** across run directories:
   ``<output dir>/.stage-cache/<stage>[-model]/<store key>/`` holds hard links (copies
   where links are impossible) of a finished stage's files and its record. The store key
   adds a fingerprint of the ``pipeline`` package's source, so a code change recomputes.
   Each file's size and BLAKE2b digest are recorded at publish time and checked on
   restore: an entry with a missing, truncated or altered file is deleted and the stage
   recomputed, never reused. The report is not stored: it describes one run.

A stage that fails leaves no record (its old record is removed before it runs), so
neither level can ever offer the outputs of a failed stage.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.atomic import as_out_of_space, write_json
from pipeline.core.cancel import check_cancelled
from pipeline.core.errors import OutOfSpaceError
from pipeline.core.memory import release_free_memory
from pipeline.models import registry
from pipeline.runner.failures import failed_models
from pipeline.runner.stages.fit import is_fit_part

if TYPE_CHECKING:
    from pipeline.runner.context import RunContext

log = logging.getLogger(__name__)

STORE_DIR = ".stage-cache"
#: Stages shared across runs, besides the fits of a model (``fold-<i>``, ``refit``, ``random``);
#: report is about one run: never shared.
CROSS_RUN_STAGES = ("prepare", "train", "map", "assess")
NOT_STAGE_CODE = ("cli",)  # packages of ``pipeline`` no stage runs: editing them keeps the store valid
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- keys
def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-able parts (dict order does not matter)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def stage_key(ctx: RunContext, stage: str, model: str | None = None) -> str:
    """Fingerprint of a stage's inputs: config, input files, upstream stage keys."""
    cfg = ctx.cfg.model_dump(mode="json")
    # Only the parts of the config a stage reads go into its key, so that e.g. adding a
    # model does not invalidate the data preparation.
    shared = {k: cfg[k] for k in ("seed", "rasters", "labels", "scenes", "classes", "patch", "split", "sampling")}
    if stage == "prepare":
        return fingerprint("prepare", shared, ctx.hash_inputs())
    prep = stage_key(ctx, "prepare")
    if stage == "train" or is_fit_part(stage):
        assert model is not None
        device = ctx.device if registry.get(model).deep else ""
        # one fit (fold-<i>, refit, random), or the pooling of all of them (they follow from the
        # same inputs, so the pooling's key needs no list of them)
        what = ("fit", stage) if stage != "train" else ("train", "pooled folds + refit")
        return fingerprint(*what, model, prep, cfg["models"][model], device)
    if stage == "map":
        return fingerprint("map", model, stage_key(ctx, "train", model), cfg["mapping"], cfg["outputs"])
    if stage in ("assess", "report"):
        ups = [stage_key(ctx, "map", m) for m in ctx.cfg.models.enabled()]
        # which models failed changes metrics.json although no input changed (a retried model may succeed)
        return fingerprint(stage, ups, failed_models(ctx))
    raise ValueError(stage)


def shared_across_runs(stage: str) -> bool:
    """Whether a stage's outputs go to the cross-run store (:data:`CROSS_RUN_STAGES` and the fits)."""
    return stage in CROSS_RUN_STAGES or is_fit_part(stage)


def stage_name(stage: str, model: str | None) -> str:
    return f"{stage}:{model}" if model else stage


# ----------------------------------------------------------------------------- run-directory records
def record_path(ctx: RunContext, stage: str, model: str | None) -> Path:
    """``stages/<stage>[-model].json`` of the run directory."""
    return ctx.path("stages", f"{stage}{'-' + model if model else ''}.json")


def read_record(path: Path) -> dict | None:
    """A stage record, or None when it is missing or unreadable (a crash or a full disk can leave
    a damaged one; what it described is then recomputed, never trusted)."""
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable stage record (%s); treating the stage as not run", path, e)
        return None
    if not isinstance(rec, dict):
        log.warning("%s: not a stage record; treating the stage as not run", path)
        return None
    return rec


def damaged_output(ctx: RunContext, rec: dict) -> str | None:
    """Why a recorded stage's files cannot be reused (missing, another size, another BLAKE2b
    digest than when the stage finished), or None when every one is as recorded.

    A record written before file digests were recorded (no ``files``) cannot be checked: it is
    not reused either.
    """
    files = rec.get("files")
    if not isinstance(files, dict):
        return "its record has no file sizes and digests to check the outputs against"
    for rel in rec.get("outputs", []):
        if rel not in files:
            return f"{rel} has no recorded digest"
    for rel, want in files.items():
        f = ctx.run_dir / rel
        try:
            size = f.stat().st_size
        except OSError:
            return f"{rel} is missing"
        if size != want.get("bytes"):
            return f"{rel} has {size} bytes, {want.get('bytes')} when the stage finished"
        if file_digest(f) != want.get("blake2b"):
            return f"{rel} changed since the stage finished (its digest differs)"
    return None


def cached_stage(ctx: RunContext, stage: str, model: str | None = None) -> dict | None:
    """The record of a finished stage whose inputs are unchanged and whose outputs are the files it
    wrote (same size and digest), else None. A stage whose outputs were damaged or changed is
    recomputed, with a warning."""
    rec = read_record(record_path(ctx, stage, model))
    if rec is None or rec.get("key") != stage_key(ctx, stage, model):
        return None
    why = damaged_output(ctx, rec)
    if why is not None:
        log.warning("stage %s: %s; recomputing it", stage_name(stage, model), why)
        return None
    return rec


def output_digests(ctx: RunContext, stage: str, model: str | None, rec: dict) -> dict[str, dict]:
    """Size and BLAKE2b of every file a finished stage wrote (what :func:`cached_stage` checks)."""
    out = {}
    for rel in stage_files(ctx, stage, model, rec):
        f = ctx.run_dir / rel
        out[rel] = {"bytes": f.stat().st_size, "blake2b": file_digest(f)}
    return out


def run_stage(
    ctx: RunContext, stage: str, fn: Callable[[RunContext], dict], model: str | None = None, use_cache: bool = True
) -> dict:
    """Run ``fn`` unless a valid record exists in the run directory; returns the record with
    ``seconds`` and ``cached``. The record is written only after ``fn`` succeeds."""
    if use_cache:
        rec = cached_stage(ctx, stage, model)
        if rec is not None:
            log.info("stage %s: unchanged, skipped", stage_name(stage, model))
            return {**rec, "cached": True, "seconds": 0.0}
    record_path(ctx, stage, model).unlink(missing_ok=True)  # a failed rerun must not leave the old record
    check_cancelled()  # Ctrl-C / SIGTERM: start no new stage
    t0 = time.perf_counter()
    try:
        out = fn(ctx)
    finally:
        release_free_memory()  # what this stage freed must not stay resident under the next one
    rec = {
        "stage": stage,
        "model": model,
        "key": stage_key(ctx, stage, model),
        **out,
        "seconds": time.perf_counter() - t0,
        "cached": False,
    }
    # What --resume checks before it reuses the stage (the store records the same at publish).
    rec["files"] = output_digests(ctx, stage, model, rec)
    write_json(record_path(ctx, stage, model), rec)
    return rec


# ----------------------------------------------------------------------------- store
@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the ``pipeline`` package's Python source: a code change invalidates the store."""
    return source_fingerprint(Path(__file__).resolve().parents[1])


def source_fingerprint(root: Path) -> str:
    """Hash of every ``*.py`` under the package folder ``root`` (all stages' code), except the
    packages named in :data:`NOT_STAGE_CODE`."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if rel.parts[0] in NOT_STAGE_CODE:
            continue
        h.update(rel.as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes, read in 1 MiB chunks (files may be larger than memory)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def stage_files(ctx: RunContext, stage: str, model: str | None, rec: dict) -> list[str]:
    """Every file a finished stage produced (its declared outputs plus undeclared by-products)."""
    files = list(rec.get("outputs", []))
    if stage in ("train", "refit") and model:  # the refit's learning curves (deep models)
        files += [f"curves/{model}{s}" for s in (".json", ".png") if (ctx.run_dir / "curves" / f"{model}{s}").exists()]
    return files


def store_entry(ctx: RunContext, stage: str, model: str | None, key: str) -> Path:
    skey = fingerprint("store", key, code_fingerprint())
    return ctx.run_dir.parent / STORE_DIR / f"{stage}{'-' + model if model else ''}" / skey


def _unique_tmp(p: Path, tag: str) -> Path:
    return p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.{tag}")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Place ``src`` at ``dst`` atomically: hard link where possible, else copy (temporary name, rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _unique_tmp(dst, "link")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def publish(ctx: RunContext, stage: str, model: str | None, rec: dict) -> Path | None:
    """Put a finished stage's files and record into the store (atomically: build, then rename).

    The entry records each file's size and BLAKE2b digest, which :func:`restore` checks.
    """
    if not shared_across_runs(stage):
        return None
    entry = store_entry(ctx, stage, model, rec["key"])
    if (entry / "record.json").exists():
        return entry
    tmp = _unique_tmp(entry, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        files = {}
        known = rec.get("files") or {}
        for rel in stage_files(ctx, stage, model, rec):
            dst = tmp / "files" / rel
            _link_or_copy(ctx.run_dir / rel, dst)
            if rel in known and os.path.samefile(ctx.run_dir / rel, dst):  # a hard link: digested at the stage's end
                files[rel] = known[rel]
            else:
                files[rel] = {"bytes": dst.stat().st_size, "blake2b": file_digest(dst)}
        clean = {k: v for k, v in rec.items() if k not in ("cached", "source", "name")}
        write_json(
            tmp / "record.json",
            {"record": clean, "files": files, "from_run": ctx.run_dir.name, "code": code_fingerprint()},
        )
        os.rename(tmp, entry)
    except (OSError, OutOfSpaceError) as e:  # another process published the same key first, or the disk is full
        if not (entry / "record.json").exists():
            log.warning("stage store: could not publish %s (%s)", stage_name(stage, model), e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry if (entry / "record.json").exists() else None


def _drop(entry: Path, why: str) -> None:
    log.warning("stage store entry %s %s; deleting it and recomputing", entry, why)
    # rename first, so a concurrent reader never sees half a directory
    trash = _unique_tmp(entry, "drop")
    try:
        os.rename(entry, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def restore(ctx: RunContext, stage: str, model: str | None) -> dict | None:
    """Restore a stage's outputs from the store into this run directory; None on a miss.

    Every file is checked against the size and digest recorded at publish time; an entry
    that fails the check (or cannot be read) is deleted, so the stage re-runs and publishes
    a sound one. The stage record is written last, so an interrupted restore is redone.
    """
    if not shared_across_runs(stage):
        return None
    key = stage_key(ctx, stage, model)
    entry = store_entry(ctx, stage, model, key)
    meta_path = entry / "record.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        rec = meta["record"]
        if rec.get("key") != key:
            return None
        for rel, want in meta["files"].items():
            f = entry / "files" / rel
            if not f.is_file():
                _drop(entry, f"lacks {rel}")
                return None
            if f.stat().st_size != want["bytes"] or file_digest(f) != want["blake2b"]:
                _drop(entry, f"has a changed or damaged {rel}")
                return None
        for rel, want in meta["files"].items():
            try:
                _link_or_copy(entry / "files" / rel, ctx.run_dir / rel)
            except OSError as e:  # a full run disk is not a damaged entry: keep it, say so
                full = as_out_of_space(e, ctx.run_dir / rel, want["bytes"])
                if full is None:
                    raise
                raise full from e
    except (OSError, KeyError, TypeError, ValueError) as e:
        _drop(entry, f"is unusable ({e})")
        return None
    write_json(record_path(ctx, stage, model), rec)
    return {**rec, "from_run": meta.get("from_run")}


# ----------------------------------------------------------------------------- one stage, both levels
def execute_stage(
    ctx: RunContext,
    stage: str,
    fn: Callable[[RunContext], dict],
    model: str | None = None,
    logger: Any = None,
    use_store: bool = True,
) -> dict:
    """Run one stage unless the run directory or the stage store already has it.

    Returns the stage record plus ``name``, ``cached``, ``seconds`` and ``source``
    (``"run"``: this run directory had it, ``"store"``: restored from the stage store,
    ``None``: computed now).
    """
    logger = logger or log
    name = stage_name(stage, model)
    t0 = time.perf_counter()
    rec = cached_stage(ctx, stage, model)
    source = "run" if rec is not None else None
    if rec is None and use_store:
        rec = restore(ctx, stage, model)
        source = "store" if rec is not None else None
    if rec is None:
        logger.info("stage %s: running", name)
        rec = run_stage(ctx, stage, fn, model, use_cache=False)
        if use_store:
            publish(ctx, stage, model, rec)
        logger.info("stage %s: done in %.2f s", name, rec["seconds"])
    else:
        rec = {**rec, "cached": True, "seconds": time.perf_counter() - t0}
        logger.info(
            "stage %s: unchanged, reused from %s (%.2f s)",
            name,
            "this run directory" if source == "run" else f"the stage store (run {rec.get('from_run')})",
            rec["seconds"],
        )
    return {**rec, "name": name, "source": source}
