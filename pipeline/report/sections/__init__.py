"""The report's sections, one module per section or group of closely related sections.

A section is a function ``section_x(doc: Document, ctx: ReportContext) -> None`` that reads the
loaded run and adds to the document; a section with nothing to show adds nothing. The order of the
page, and the one place a new section is listed, is :data:`pipeline.report.page.SECTIONS`.
"""
