"""The run's headline, comparison table and the report's path as Prefect artifacts (Prefect imported lazily)."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.context import read_json
from pipeline.report.format import md_text
from pipeline.report.ranking import comparison_rows, headline_text


def headline_markdown(run_dir: Path, metrics: dict) -> str:
    """The run's verdict in Markdown, as the report opens with it: the headline (best model, or why
    the evaluation is inconclusive, or leakage), then whether it is conclusive, and where the report is."""
    ev = metrics.get("evidence") or {}
    conclusive = ev.get("conclusive")
    verdict = "conclusive" if conclusive is True else "inconclusive" if conclusive is False else "not recorded"
    if ev.get("leakage"):
        verdict += ", accuracy inflated by spatial leakage"
    html_path = run_dir / "report.html"
    return (
        f"# {md_text(run_dir.name)}\n\n"
        f"**{md_text(headline_text(metrics))}**\n\n"
        f"- Evaluation: {verdict}\n"
        f"- Report: [{md_text(html_path)}]({html_path.as_uri()})\n"
    )


def publish_artifacts(run_dir: Path) -> None:
    """Publish the headline (``run-headline``, Markdown), the comparison table
    (``model-comparison``) and the report's path (``land-cover-report``) as Prefect artifacts.

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
    create_markdown_artifact(
        markdown=headline_markdown(run_dir, metrics),
        key="run-headline",
        description=f"Verdict of run {run_dir.name}",
    )
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
