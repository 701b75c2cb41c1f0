"""Models that failed: one model's error is recorded and the run goes on with the others.

``failed/<model>.json`` holds ``{"stage", "reason"}`` of a model whose stage raised; metrics.json
and manifest.json list them under ``failed_models``, and the stage keys of ``assess`` and
``report`` include them (:func:`pipeline.runner.store.stage_key`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipeline.core.atomic import write_json
from pipeline.runner.files import read_json

if TYPE_CHECKING:
    from pipeline.runner.context import RunContext

log = logging.getLogger(__name__)

FAILED_DIR = "failed"  # failed/<model>.json: {"stage", "reason"} of a model whose stage raised


def one_line_reason(exc: BaseException, limit: int = 300) -> str:
    """``ExceptionType: first line of the message``, short enough for a console line."""
    text = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def record_failure(ctx: RunContext, stage: str, model: str, exc: BaseException) -> dict:
    """Record that ``model`` failed in ``stage``; the run goes on with the other models."""
    rec = {"stage": stage, "reason": one_line_reason(exc)}
    write_json(ctx.path(FAILED_DIR, f"{model}.json"), rec)
    log.error("model %s failed in stage %s: %s (the other models go on)", model, stage, rec["reason"])
    log.debug("model %s: %s failure", model, stage, exc_info=exc)  # the traceback, for run.log with --debug
    return rec


def clear_failure(ctx: RunContext, model: str) -> None:
    """Forget an earlier failure of ``model`` (before it is tried again)."""
    (ctx.run_dir / FAILED_DIR / f"{model}.json").unlink(missing_ok=True)


def failed_models(ctx: RunContext) -> dict[str, dict]:
    """``{model: {"stage", "reason"}}`` for every enabled model that failed in this run."""
    out = {}
    for m in ctx.cfg.models.enabled():
        f = ctx.run_dir / FAILED_DIR / f"{m}.json"
        if f.exists():
            out[m] = read_json(f)
    return out
