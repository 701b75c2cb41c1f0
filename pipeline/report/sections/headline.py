"""The top of the report: the headline (verdict), the run summary and the models that failed."""

from __future__ import annotations

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt
from pipeline.report.ranking import headline_text


def section_headline(doc: Document, ctx: ReportContext) -> None:
    doc.p(headline_text(ctx.metrics), strong=True)


def section_failed_models(doc: Document, ctx: ReportContext) -> None:
    """Models that failed (stage and one-line reason): they are in no table below."""
    failed = ctx.metrics.get("failed_models") or {}
    if not failed:
        return
    doc.h(2, "Failed models")
    doc.p(
        f"{len(failed)} model(s) failed and are missing from every table and map below; the other models "
        "were trained, mapped and assessed as usual. The full traceback is in run.log."
    )
    doc.table([{"model": m, "stage": f.get("stage", "?"), "reason": f.get("reason", "?")} for m, f in failed.items()])


def section_run_summary(doc: Document, ctx: ReportContext) -> None:
    cfg, manifest = ctx.cfg, ctx.manifest
    doc.h(2, "Run summary")
    facts = [{"item": "run directory", "value": ctx.run_dir.name}]
    ras = (cfg.get("rasters") or {}).get("paths") if isinstance(cfg.get("rasters"), dict) else None
    if ras:
        facts.append({"item": "image", "value": ", ".join(map(str, ras if isinstance(ras, list) else [ras]))})
    if isinstance(cfg.get("labels"), dict) and cfg["labels"].get("path"):
        facts.append({"item": "labels", "value": str(cfg["labels"]["path"])})
    if cfg.get("seed") is not None:
        facts.append({"item": "seed", "value": str(cfg["seed"])})
    for k, label in (
        ("started", "started"),
        ("finished", "finished"),
        ("device_requested", "device requested"),
        ("device", "device used"),
        ("git_commit", "git commit"),
    ):
        if manifest.get(k):
            facts.append({"item": label, "value": str(manifest[k])})
    doc.table(facts)
    doc.table(
        [
            {
                "stage": s.get("name", "?"),
                "seconds": fmt(s.get("seconds"), "sec"),
                "cached": "yes" if s.get("cached") else "no",
            }
            for s in manifest.get("stages") or []
        ]
    )
