"""The report's document model: headings, paragraphs, tables and image rows, rendered to
Markdown and to self-contained HTML.

The Markdown references images by relative path, the HTML embeds them as base64 data URIs with
inline CSS, so it opens anywhere without the run directory.
"""

from __future__ import annotations

import base64
import html
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.report.format import md_text

#: Layout rule of the HTML report: the page is at most ``PAGE_WIDTH_PX`` wide, table cells do not
#: wrap, and every table built by the report (six models included) fits that width at 1400-px
#: browser width; tests/test_report.py checks it in headless Chromium. A table that would not fit
#: scrolls inside its own box instead of overflowing the page.
PAGE_WIDTH_PX = 1200
#: The print stylesheet (its own ``<style media="print">`` element): A4 pages, the whole width used,
#: text that may wrap so that every table fits the page, no table row, figure or heading split from
#: what follows it across a page break, colours kept (the best row, swatches, the headline box).
#: tests/test_report.py prints a six-model report with headless Chromium and checks the layout.
PRINT_CSS = (
    "@page{size:A4;margin:14mm 12mm}"
    "body{max-width:none;margin:0;padding:0;font-size:9pt;color:#000}"
    "h1{font-size:15pt}h2{font-size:12.5pt;margin-top:1.2em}h3{font-size:10.5pt}"
    "h1,h2,h3{break-after:avoid;page-break-after:avoid}"
    "table,tr,figure,p.key{break-inside:avoid;page-break-inside:avoid}"
    "table{font-size:8pt}th,td{padding:.12em .3em;white-space:normal}th{hyphens:auto}"
    "td.w{min-width:0}.scroll{overflow:visible}"
    ".row{gap:.4em}figure img,figure.wide img{max-width:88mm}.row figure:only-child img{max-width:100%}"
    "figcaption{font-size:8pt}"
    "tr.best td,p.key,.sw,th{-webkit-print-color-adjust:exact;print-color-adjust:exact}"
)
#: Text cells longer than this (characters) may wrap.
LONG_CELL = 40
#: Cells shown right-aligned: numbers (with separators, signs, ``±`` half-widths, ``%``), intervals, "–".
NUMERIC_CELL = re.compile(r"(–|[<>]?\s*[-+]?[\d,.]+(%|x)?(\s*±\s*[\d,.]+)?|\[[-\d,. ]+\])")


@dataclass(frozen=True)
class Code:
    """Inline code in a paragraph (a command, a key): ``<code>`` in HTML, a code span in Markdown.
    Paragraph text is otherwise literal, so a backtick in a class or file name stays a backtick."""

    text: str


#: A paragraph: plain text, or a sequence of text and :class:`Code` parts.
Inline = str | Sequence[str | Code]


def _parts(text: Inline) -> list[str | Code]:
    return [text] if isinstance(text, str) else list(text)


def _md_code(code: str) -> str:
    fence = "`" * (max((len(r) for r in re.findall(r"`+", code)), default=0) + 1)
    pad = " " if code.startswith("`") or code.endswith("`") else ""
    return f"{fence}{pad}{code}{pad}{fence}"


class Document:
    """A tiny document: headings, paragraphs, tables and image rows, rendered to MD and HTML."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: Inline, strong: bool = False) -> None:
        """A paragraph: ``text`` is literal text, or a sequence of text and :class:`Code` parts."""
        self.blocks.append(("p", _parts(text), strong))

    def table(
        self, rows: list[dict[str, Any]], highlight: set[int] | None = None, headers: list[str] | None = None
    ) -> None:
        """A table of rows given as ``{header: cell}``; an empty list adds nothing.

        The headers are the rows' keys in first-seen order (or ``headers``), and
        every cell is looked up by its header, so a row can never shift a column;
        a key missing from a row shows "–". ``highlight`` holds row indices to
        show in bold. A cell is a string, or ``{"text", "color"}`` for a swatch.
        """
        if not rows:
            return
        if headers is None:
            headers = list(dict.fromkeys(k for r in rows for k in r))
        cells = [[r.get(h, "–") for h in headers] for r in rows]
        self.blocks.append(("table", headers, cells, highlight or set()))

    def images(self, items: Sequence[tuple[Path | None, str]]) -> None:
        """A row of images (absolute paths inside the run dir) with captions; a figure that could
        not be drawn (None) or is missing is left out."""
        kept = [(p, c) for p, c in items if p is not None and Path(p).is_file()]
        if kept:
            self.blocks.append(("images", kept))

    # -- markdown
    @staticmethod
    def _md_cell(c: Any) -> str:
        if isinstance(c, dict):  # colour swatch
            return f"{md_text(c['text'])} ({md_text(c['color'])})"
        return md_text(c)

    def markdown(self) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + md_text(b[2]))
            elif b[0] == "p":
                text = "".join(
                    _md_code(x.text) if isinstance(x, Code) else md_text(x, line_start=i == 0)
                    for i, x in enumerate(b[1])
                )
                out.append(f"**{text}**" if b[2] else text)
            elif b[0] == "table":
                _, headers, rows, hi = b
                out.append("| " + " | ".join(md_text(h) for h in headers) + " |")
                out.append("|" + "|".join(["---"] * len(headers)) + "|")
                for i, r in enumerate(rows):
                    cells = [self._md_cell(c) for c in r]
                    if i in hi:
                        cells = [f"**{c}**" if c and c != "–" else c for c in cells]
                    out.append("| " + " | ".join(cells) + " |")
            elif b[0] == "images":
                items = b[1]
                rel = [urllib.parse.quote(p.relative_to(self.run_dir).as_posix()) for p, _ in items]
                out.append("| " + " | ".join(md_text(c) for _, c in items) + " |")
                out.append("|" + "|".join(["---"] * len(items)) + "|")
                out.append("| " + " | ".join(f"![{md_text(c)}]({r})" for (_, c), r in zip(items, rel)) + " |")
            out.append("")
        return "\n".join(out)

    # -- html
    @staticmethod
    def _html_cell(c: Any) -> str:
        if isinstance(c, dict):
            return (
                f'<span class="sw" style="background:{html.escape(c["color"])}"></span>'
                f"{html.escape(c['text'])} <code>{html.escape(c['color'])}</code>"
            )
        return html.escape(str(c))

    @staticmethod
    def _numeric(c: Any) -> bool:
        """Numbers, intervals, percentages, "–" and empty cells: right-aligned columns."""
        return not isinstance(c, dict) and (str(c).strip() == "" or bool(NUMERIC_CELL.fullmatch(str(c).strip())))

    @staticmethod
    def _text_class(c: Any) -> str:
        """Cells of a text column are left-aligned ("t"); long texts (paths, lists) may wrap ("w").
        No other cell wraps (see PAGE_WIDTH_PX)."""
        return ' class="w"' if not isinstance(c, dict) and len(str(c)) > LONG_CELL else ' class="t"'

    @staticmethod
    def _figure_class(path: Path) -> str:
        """Wide figures (e.g. two-panel learning curves) get twice the width of a thumbnail."""
        import struct

        with open(path, "rb") as f:
            head = f.read(24)
        if head[:8] != b"\x89PNG\r\n\x1a\n":  # the size of a PNG is in its header (IHDR)
            return ""
        w, h = struct.unpack(">II", head[16:24])
        return ' class="wide"' if w > 1.6 * h else ""

    @staticmethod
    def _data_uri(path: Path) -> str:
        mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    def html(self, title: str) -> str:
        body: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                t = "".join(
                    f"<code>{html.escape(x.text)}</code>" if isinstance(x, Code) else html.escape(x) for x in b[1]
                )
                body.append(f'<p class="key">{t}</p>' if b[2] else f"<p>{t}</p>")
            elif b[0] == "table":
                _, headers, rows, hi = b
                numeric = [all(self._numeric(r[j]) for r in rows) for j in range(len(headers))]
                th_cls = ["" if n else ' class="t"' for n in numeric]
                parts = [
                    '<div class="scroll"><table><thead><tr>'
                    + "".join(
                        # headers may break after "_" (model names), so a table of six models stays narrow
                        f"<th{th_cls[j]}>{html.escape(h).replace('_', '_<wbr>')}</th>"
                        for j, h in enumerate(headers)
                    )
                    + "</tr></thead><tbody>"
                ]
                for i, r in enumerate(rows):
                    cls = ' class="best"' if i in hi else ""
                    parts.append(
                        f"<tr{cls}>"
                        + "".join(
                            f"<td{'' if numeric[j] else self._text_class(c)}>{self._html_cell(c)}</td>"
                            for j, c in enumerate(r)
                        )
                        + "</tr>"
                    )
                parts.append("</tbody></table></div>")
                body.append("".join(parts))
            elif b[0] == "images":
                figs = "".join(
                    f'<figure{self._figure_class(p)}><img alt="{html.escape(c)}" src="{self._data_uri(p)}">'
                    f"<figcaption>{html.escape(c)}</figcaption></figure>"
                    for p, c in b[1]
                )
                body.append(f'<div class="row">{figs}</div>')
        css = (
            f"body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:{PAGE_WIDTH_PX}px;margin:2em auto;"
            "padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
            "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}"
            "td{white-space:nowrap}.t{text-align:left}td.w{text-align:left;white-space:normal;min-width:20em}"
            "td:first-child,th:first-child{text-align:left}tr.best td{background:#e6f4e6;font-weight:600}"
            ".sw{display:inline-block;width:1em;height:1em;border:1px solid #555;margin-right:.4em;"
            "vertical-align:middle}.row{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}"
            "figure img{max-width:380px;height:auto;border:1px solid #ddd}figcaption{font-size:.9em;color:#555}"
            "figure.wide img{max-width:580px}"
            ".row figure:only-child img{max-width:100%}.scroll{overflow-x:auto}"
            "p.key{font-size:1.1em;background:#fff8e1;padding:.6em;border-left:4px solid #f0b400}"
            "code{font-size:.85em;color:#666}"
        )
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{css}</style><style media="print">{PRINT_CSS}</style></head><body>\n'
            + "\n".join(body)
            + "\n</body></html>\n"
        )
