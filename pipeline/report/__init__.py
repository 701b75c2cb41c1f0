"""The comparison report of a run: ``report.html`` (self-contained) and ``report.md``, read from
the files of a run directory (:func:`write_report`), and the comparison table as Prefect artifacts
(:func:`publish_artifacts`). The page is the ordered table of sections in
:data:`pipeline.report.page.SECTIONS`, the one place to add a report section (one module per
section or group in :mod:`pipeline.report.sections`); :func:`rank_models`,
:func:`headline_text` and :func:`comparison_rows` give its verdict and model table as values.
"""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "Document",
    "ReportContext",
    "comparison_rows",
    "fmt",
    "headline_text",
    "md_text",
    "publish_artifacts",
    "rank_models",
    "significance_sentence",
    "write_report",
]
#: name -> module of this package that defines it (imported on first use)
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Document": "document",
        "ReportContext": "context",
        "comparison_rows": "ranking",
        "fmt": "format",
        "headline_text": "ranking",
        "md_text": "format",
        "publish_artifacts": "artifacts",
        "rank_models": "ranking",
        "significance_sentence": "ranking",
        "write_report": "page",
    },
)
