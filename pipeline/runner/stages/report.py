"""Stage 5, ``report``: report.html and report.md of the run (:mod:`pipeline.report.page`)."""

from __future__ import annotations

from pipeline.runner.context import RunContext


def stage_report(ctx: RunContext) -> dict:
    from pipeline.report.page import write_report

    html, md = write_report(ctx.run_dir)
    return {"outputs": [html.name, md.name]}
