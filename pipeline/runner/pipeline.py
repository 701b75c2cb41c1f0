"""The pipeline as plain stage functions over a run directory, run in order in this process.

Each stage (:mod:`pipeline.runner.stages`) reads files of the run directory, writes its
outputs atomically and returns a small JSON-able record. A stage also writes
``stages/<stage>.json`` holding the fingerprint of its inputs (config hash, input-file hashes,
the fingerprints of the stages it depends on); a rerun or ``--resume`` skips a stage whose
fingerprint and outputs are unchanged. Prefect flows (``flows/``) wrap exactly these functions
(through :func:`run_one`); :func:`run_pipeline` runs them in order without Prefect.

Run directory layout: docs/outputs.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.errors import OutOfSpaceError
from pipeline.runner.context import RunContext
from pipeline.runner.failures import clear_failure, record_failure
from pipeline.runner.manifest import reuse_summary, write_manifest
from pipeline.runner.stages.assess import stage_assess
from pipeline.runner.stages.fit import fit_parts, is_fit_part, stage_fit
from pipeline.runner.stages.map import stage_map
from pipeline.runner.stages.prepare import stage_prepare
from pipeline.runner.stages.report import stage_report
from pipeline.runner.stages.train import stage_train
from pipeline.runner.store import execute_stage

log = logging.getLogger(__name__)


def _one_model(stage: str, model: str | None) -> str:
    """The model a per-model stage runs for (the runners always name one)."""
    if model is None:
        raise ValueError(f"stage {stage!r} runs once per model; no model was given")
    return model


# Every stage by name: (run context, model or None) -> record. The one table both runners use.
STAGES: dict[str, Callable[[RunContext, str | None], dict]] = {
    "prepare": lambda ctx, m: stage_prepare(ctx),
    "train": lambda ctx, m: stage_train(ctx, _one_model("train", m)),
    "map": lambda ctx, m: stage_map(ctx, _one_model("map", m)),
    "assess": lambda ctx, m: stage_assess(ctx),
    "report": lambda ctx, m: stage_report(ctx),
}


def stage_function(stage: str) -> Callable[[RunContext, str | None], dict]:
    """The function of a stage named in :data:`STAGES`, or of one fit of a model (``fold-<i>``,
    ``refit``, ``random``: :mod:`pipeline.runner.stages.fit`)."""
    if is_fit_part(stage):
        return lambda ctx, m: stage_fit(ctx, _one_model(stage, m), stage)
    return STAGES[stage]


def run_one(ctx: RunContext, stage: str, model: str | None = None, logger: Any = None) -> dict:
    """Run one stage with both cache levels of :mod:`pipeline.runner.store` (what every runner calls)."""
    fn = stage_function(stage)
    return execute_stage(ctx, stage, lambda c: fn(c, model), model, logger=logger)


def train_model(ctx: RunContext, model: str, logger: Any = None) -> list[dict]:
    """Every fit of ``model`` (its folds, the refit, the random contrast: :func:`fit_parts`), one
    stage each, then the ``train`` stage that pools them; returns their records. Needs ``prepare``."""
    recs = [run_one(ctx, part, model, logger=logger) for part in fit_parts(ctx)]
    return recs + [run_one(ctx, "train", model, logger=logger)]


def run_pipeline(ctx: RunContext) -> Path:
    """Run every stage in order in this process (no Prefect). Returns the run directory.

    Uses the same run-directory records and cross-run stage store as the Prefect flow.
    """
    t_run = time.perf_counter()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stages = [run_one(ctx, "prepare")]  # bad data stops here (InputError), before any model
    for m in ctx.cfg.models.enabled():
        clear_failure(ctx, m)
        stage = "train"  # a failed fit is recorded as the model's failure to train
        try:
            stages.extend(train_model(ctx, m))
            stage = "map"
            stages.append(run_one(ctx, "map", m))
        except OutOfSpaceError:
            raise  # a full disk is not one model's failure: every later write would fail too
        except Exception as e:  # noqa: BLE001 - one model's failure must not sink the others
            record_failure(ctx, stage, m, e)
    stages.append(run_one(ctx, "assess"))
    write_manifest(ctx, started, stages, {"engine": "local"})  # provisional: the report shows the run's provenance
    stages.append(run_one(ctx, "report"))
    seconds = round(time.perf_counter() - t_run, 3)
    sources = {s["name"]: s.get("source") for s in stages}
    write_manifest(ctx, started, stages, {"engine": "local", "stage_sources": sources, "run_seconds": seconds})
    log.info("%s", reuse_summary(stages, seconds))
    return ctx.run_dir
