"""report.md treats names from the data as text, as report.html does: a class, band or model
name cannot open a link, an image, raw HTML, a table cell or a new block."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from tiny_project import make_project  # noqa: E402

from pipeline.report.format import md_text  # noqa: E402

HOSTILE = ["<img src=x onerror=alert(1)>", "a|b [x](javascript:alert(1))", "**loud** `code` ![i](http://t/x.png)"]


def test_md_text_is_literal():
    assert md_text("<b>") == "&lt;b&gt;" and md_text("a|b") == "a\\|b" and md_text("decision_tree") == "decision_tree"
    assert md_text("[x](y)") == "\\[x\\](y)" and md_text("two\nlines") == "two lines"
    assert md_text("# not a heading", line_start=True).startswith("\\#")
    assert md_text("1. not a list", line_start=True) == "1\\. not a list"


def test_report_md_escapes_class_and_band_names(tmp_path):
    from pipeline.config import load_config
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_pipeline

    cfg_path = make_project(tmp_path / "p")
    raw = yaml.safe_load(cfg_path.read_text())
    for c, name in zip(raw["classes"], HOSTILE):
        c["name"] = name
    raw["rasters"]["band_names"] = ["blue|x", "<red>", "nir_"]
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg, base = load_config(cfg_path)
    run = run_pipeline(init_run_dir(cfg, base, out=tmp_path / "runs", run_id="r_1", progress=False))
    md = (run / "report.md").read_text()
    assert "<img" not in md and "<red>" not in md and "![i](http" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md)  # the link syntax only ever appears escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in md
    # every table keeps its column count: no name added a cell
    lines = md.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("|---") or ln.startswith("|:--"):
            n = ln.count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert lines[j].replace("\\|", "").count("|") == n, lines[j]
                j += 1
    html = (run / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
