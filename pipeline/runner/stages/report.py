"""Stage 5, ``report``: report.html and report.md of the run (:mod:`pipeline.report.page`), and
with ``outputs.stac`` the run's STAC catalog ``stac/`` (:mod:`pipeline.runner.catalog`)."""

from __future__ import annotations

from pipeline.runner.context import RunContext


def stage_report(ctx: RunContext) -> dict:
    from pipeline.report.page import write_report
    from pipeline.runner.catalog import write_run_stac

    html, md = write_report(ctx.run_dir)
    stac = write_run_stac(ctx) if ctx.cfg.outputs.stac else []
    return {"outputs": [html.name, md.name, *stac]}
