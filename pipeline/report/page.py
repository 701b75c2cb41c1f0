"""The comparison report analysts read: ``report.html`` (self-contained) and ``report.md``.

Everything is read from the run directory (``metrics.json``, ``config.yaml``,
``manifest.json``, ``split_map.png``, ``maps/``, ``curves/``); nothing is
estimated here. Every number shown is a value of those files, formatted:
accuracies, kappa, F1 and p-values to 3 decimals, seconds and distances to 2 decimals
(1 from 10 up),
mapping speeds to 3 significant digits, areas in hectares to 1 decimal.

Figures drawn for the report (confusion-matrix heat maps, learning curves without a PNG,
map quicklooks without a PNG, the legend) go to ``report_files/``; the
Markdown references images by relative path, the HTML embeds them as base64
data URIs with inline CSS, so it opens anywhere without the run directory.

The page is assembled here from :data:`SECTIONS`, the one place that lists the report's
sections; each section lives in :mod:`pipeline.report.sections`, its figures in
:mod:`pipeline.report.figures`, the document that renders Markdown and HTML in
:mod:`pipeline.report.document`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.core.atomic import write_text
from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.sections.areas import section_areas
from pipeline.report.sections.classes import section_classes, section_unusable_labels
from pipeline.report.sections.comparison import section_comparison, section_pairwise
from pipeline.report.sections.confusion import section_confusion
from pipeline.report.sections.curves import section_learning_curves
from pipeline.report.sections.footer import section_footer
from pipeline.report.sections.headline import section_failed_models, section_headline, section_run_summary
from pipeline.report.sections.maps import section_confidence, section_maps
from pipeline.report.sections.models import section_models
from pipeline.report.sections.per_class import section_per_class
from pipeline.report.sections.reference_polygons import section_reference_polygons
from pipeline.report.sections.scenes import section_scenes
from pipeline.report.sections.split import section_audit, section_random_vs_spatial, section_split

#: A report section: reads the loaded run (``ctx``) and adds headings, paragraphs, tables and
#: images to the document (``doc``); a section that has nothing to show adds nothing.
Section = Callable[[Document, ReportContext], None]


#: The report's sections in order: the one place to add a section to the report.
#: Adding a section: write ``section_x(doc: Document, ctx: ReportContext) -> None`` in a module of
#: ``pipeline/report/sections/`` (a new module, or the one of its closest neighbours), reading only
#: ``ctx`` (add a field to :class:`ReportContext` for a new run file) and drawing any figure with
#: :mod:`pipeline.report.figures` into ``ctx.figs``; then import it here and list it where it
#: belongs in the page. A section that has nothing to show adds nothing.
SECTIONS: list[Section] = [
    section_headline,
    section_run_summary,
    section_failed_models,
    section_classes,
    section_unusable_labels,
    section_split,
    section_audit,
    section_random_vs_spatial,
    section_comparison,
    section_models,
    section_scenes,
    section_pairwise,
    section_per_class,
    section_reference_polygons,
    section_confusion,
    section_learning_curves,
    section_maps,
    section_confidence,
    section_areas,
    section_footer,
]


def _build(run_dir: Path) -> tuple[Document, str]:
    ctx = ReportContext.load(run_dir)
    title = f"Land-cover model comparison: {ctx.cfg.get('name') or run_dir.name}"
    doc = Document(run_dir)
    doc.h(1, title)
    for section in SECTIONS:
        section(doc, ctx)
    return doc, title


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into a run directory.

    Parameters
    ----------
    run_dir : Path
        A run directory with at least ``metrics.json``; every other part
        (config, manifest, split map, maps, curves, area estimates, paired
        tests, random-split contrast) is shown when present and skipped when not.

    Returns
    -------
    (html_path, md_path) : tuple of Path
    """
    run_dir = Path(run_dir)
    doc, title = _build(run_dir)
    out_html, out_md = run_dir / "report.html", run_dir / "report.md"
    write_text(out_md, doc.markdown())
    write_text(out_html, doc.html(title))
    return out_html, out_md
