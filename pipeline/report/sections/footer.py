"""The last line: when the report was written."""

from __future__ import annotations

import datetime as dt

from pipeline.report.context import ReportContext
from pipeline.report.document import Document


def section_footer(doc: Document, ctx: ReportContext) -> None:
    doc.p(
        f"Report written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} from the files of this run directory."
    )
