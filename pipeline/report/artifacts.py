"""The run's comparison table and the report's path as Prefect artifacts (Prefect imported lazily)."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.context import read_json
from pipeline.report.ranking import comparison_rows, headline_text


def publish_artifacts(run_dir: Path) -> None:
    """Publish the comparison table and the report's path as Prefect artifacts.

    Only inside a Prefect flow run; anywhere else (or without Prefect installed)
    it does nothing. Prefect is imported here, not at module import.
    """
    try:
        from prefect.context import FlowRunContext
    except ImportError:
        return
    ctx = FlowRunContext.get()
    if ctx is None or getattr(ctx, "flow_run", None) is None:
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    run_dir = Path(run_dir).resolve()
    metrics = read_json(run_dir / "metrics.json") or {}
    create_table_artifact(
        table=comparison_rows(metrics),
        key="model-comparison",
        description=headline_text(metrics),
    )
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    create_markdown_artifact(
        markdown=f"# Land-cover report\n\n- HTML: [{html_path}]({html_path.as_uri()})\n"
        f"- Markdown: [{md_path}]({md_path.as_uri()})\n- Run directory: `{run_dir}`\n",
        key="land-cover-report",
        description="Where this run's comparison report is",
    )
