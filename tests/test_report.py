"""Tests of pipeline.report on a fake but complete run directory."""

from __future__ import annotations

import html
import json
import re
import types

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.evaluation.accuracy import assess_model
from pipeline.evaluation.comparison import compare_classifiers, method_record
from pipeline.evaluation.metrics import classification_metrics
from pipeline.report import publish_artifacts, write_report

CLASSES = [
    {"id": 1, "name": "water", "color": "#1f78b4"},
    {"id": 2, "name": "forest", "color": "#33a02c"},
    {"id": 3, "name": "urban", "color": "#e31a1c"},
]
IDS = [c["id"] for c in CLASSES]
NAMES = [c["name"] for c in CLASSES]


def _write_map(path, data):
    from rasterio.enums import ColorInterp  # noqa: F401  (colormap written below)

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(300_000, 4_000_000, 10, 10),
        nodata=255,
    ) as dst:
        dst.write(data, 1)
        dst.write_colormap(
            1, {c["id"]: tuple(int(c["color"][i : i + 2], 16) for i in (1, 3, 5)) + (255,) for c in CLASSES}
        )


def _png(path, seed=0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().imshow(np.random.default_rng(seed).random((8, 8)))
    fig.savefig(path)


def make_run_dir(tmp_path, deep: bool = True, contrast: bool = True, six: bool = False):
    run = tmp_path / "run-1"
    for sub in ("maps", "curves", "eval"):
        (run / sub).mkdir(parents=True)
    rng = np.random.default_rng(42)
    n = 1500
    blocks = rng.integers(0, 30, n)
    y = rng.choice(IDS, n, p=[0.2, 0.6, 0.2])
    accs = {"decision_tree": 0.70, "random_forest": 0.86, "svm": 0.85}
    if deep:
        accs["cnn"] = 0.80
    if six:
        accs.update(max_likelihood=0.78, resnet=0.82)
    models, preds = {}, {}
    base = rng.random(n)
    for i, (m, acc) in enumerate(accs.items()):
        wrong = rng.choice(IDS, n)
        p = np.where(base < acc + 0.01 * rng.standard_normal(n), y, wrong)
        data = np.full((50, 60), 2, np.uint8)
        data[:, : 10 + 3 * i] = 1
        data[40:, 50:] = 3
        data[0, :] = 255
        _write_map(run / "maps" / f"{m}.tif", data)
        r = assess_model(y, p, blocks, IDS, NAMES, map_path=run / "maps" / f"{m}.tif", n_boot=200, seed=1)
        r["fit_seconds"] = 1.234 * (i + 1)
        r["predict_mpx_per_s"] = 0.0123456 * (i + 1)
        if m == "cnn":
            r["epochs_run"], r["best_epoch"] = 12, 9
            (run / "curves" / "cnn.json").write_text(
                json.dumps(
                    [
                        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_macro_f1": 0.5 + e / 30}
                        for e in range(1, 13)
                    ]
                )
            )
        models[m] = r
        preds[m] = p
    majority = np.full(n, 2)  # a constant map of forest, the commonest class
    comp = compare_classifiers(y, preds, blocks, IDS, NAMES, IDS, {"majority": majority}, n_boot=200, seed=1)
    for m in models:
        models[m]["ranking"] = comp["ranking"][m]
        models[m]["vs_baselines"] = comp["vs_baselines"][m]
    _png(run / "maps" / "random_forest.png")  # a quicklook that exists already
    _png(run / "split_map.png", 1)
    metrics = {
        "classes": CLASSES,
        "models": models,
        "split": {
            "strategy": "blocks",
            "block_size": 640.0,
            "buffer": 40.0,
            "seed": 0,
            "counts": {
                "train": {"water": 300, "forest": 900, "urban": 280},
                "validation": {"water": 60, "forest": 180, "urban": 50},
                "test": {"water": 300, "forest": 900, "urban": 300},
            },
            "dropped_by_buffer": 77,
            "missing_classes": {"train": [], "test": ["urban"]},
            "audit": {
                "min_train_test_distance": 45.0,
                "train_patches_touching_test_pixels": 0,
                "test_patches_touching_train_pixels": 0,
            },
        },
        "random_split_contrast": {
            m: {
                "overall_accuracy_random": 0.97,
                "overall_accuracy_spatial": models[m]["overall_accuracy"],
                "gap": 0.97 - models[m]["overall_accuracy"],
            }
            for m in models
        }
        if contrast
        else {},
        "pairwise": comp["pairwise"],
        "baselines": {
            "majority": {
                "label": "no-skill: majority class",
                **classification_metrics(y, majority, IDS, NAMES),
                "ranking": comp["ranking"]["majority"],
                "classes_per_fold": ["forest"],
            }
        },
        "statistics": method_record("block", 200),
        "labels": {"pixels_per_class": {"water": 1000, "forest": 3000, "urban": 900}},
    }
    (run / "metrics.json").write_text(json.dumps(metrics, allow_nan=False))
    (run / "config.yaml").write_text(
        "name: demo\nseed: 0\nrasters:\n  paths: [scene.tif]\nlabels:\n  path: labels.gpkg\n"
    )
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "started": "2026-11-21T10:00:00+00:00",
                "finished": "2026-11-21T10:05:00+00:00",
                "stages": [
                    {"name": "split", "seconds": 1.5, "cached": False},
                    {"name": "train", "seconds": 100.25, "cached": True},
                ],
            }
        )
    )
    return run, metrics


def _md_table(md: str, header_start: str) -> list[list[str]]:
    """Rows (cells, bold markers stripped) of the first Markdown table whose header starts so."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {header_start}"))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        # report.md escapes Markdown's special characters ("\\[", "&lt;"): read cells as a renderer shows them
        rows.append(
            [html.unescape(re.sub(r"\\(.)", r"\1", c.strip())).strip("*") for c in ln.strip().strip("|").split("|")]
        )
    return rows


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _ci(s: str) -> list[float]:
    lo, hi = s.strip("[]").split(",")
    return [_num(lo), _num(hi)]


def test_report_complete_run(tmp_path):
    run, metrics = make_run_dir(tmp_path)
    html_path, md_path = write_report(run)
    assert html_path == run / "report.html" and md_path == run / "report.md"
    assert not list(run.glob(".*tmp*"))
    html = html_path.read_text()
    md = md_path.read_text()

    # self-contained HTML: every image a data URI, nothing fetched from anywhere
    imgs = re.findall(r'<img[^>]*src="([^"]*)"', html)
    assert len(imgs) >= 7
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "<script" not in html
    # Markdown references images by relative paths that exist
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert not rel.startswith(("/", "http")) and (run / rel).is_file(), rel
    assert "split_map.png" in md and "maps/random_forest.png" in md
    assert "report_files/map_svm.png" in md and "report_files/curve_cnn.png" in md
    assert "report_files/legend.png" in md
    # learning curves mark the epoch whose weights each deep model kept (metrics.json best_epoch)
    assert f"cnn: weights of epoch {metrics['models']['cnn']['best_epoch']} kept" in md
    # error matrices: tables whose totals and margins follow from metrics.json's confusion matrix
    from pipeline.report.ranking import rank_models

    first = rank_models(metrics["models"])[0]
    cm = metrics["models"][first]["confusion_matrix"]
    mat = np.asarray(cm["matrix"])
    rows = _md_table(md, "reference")
    q = len(cm["labels"])
    assert [r[0] for r in rows] == [*cm["labels"], "total", "user's accuracy"]
    assert [_num(r[q + 1]) for r in rows[:q]] == mat.sum(axis=1).tolist()  # row totals
    assert [_num(c) for c in rows[q][1 : q + 2]] == [*mat.sum(axis=0).tolist(), mat.sum()]
    for i in range(q):
        pa, ua = rows[i][q + 2], rows[q + 1][i + 1]
        assert pa == ("–" if mat[i].sum() == 0 else f"{100 * mat[i, i] / mat[i].sum():.1f}%")
        assert ua == ("–" if mat[:, i].sum() == 0 else f"{100 * mat[i, i] / mat[:, i].sum():.1f}%")

    models = metrics["models"]
    # comparison table: numbers equal metrics.json as formatted, best first and bold
    rows = _md_table(md, "model | overall accuracy")
    best = max(models, key=lambda m: models[m]["overall_accuracy"])
    assert rows[0][0] == best
    assert re.search(rf"^\| \*\*{best}\*\* \|", md, re.M)
    assert [r[0] for r in rows[len(models) :]] == ["no-skill: majority (forest)"]
    assert {r[0] for r in rows[: len(models)]} == set(models)

    def value_ci(cell: str) -> tuple[float, list[float]]:
        v, ci = cell.split(" ", 1)
        return _num(v), _ci(ci)

    for r in rows[: len(models)]:
        m = models[r[0]]
        # every class is assessable here: the ranking figures are the model's own
        assert m["ranking"]["overall_accuracy"] == m["overall_accuracy"]
        assert all(m["ranking"]["ci95"][k] == m["ci95"][k] for k in ("overall_accuracy", "kappa", "macro_f1"))
        for cell, k in zip(r[1:4], ("overall_accuracy", "kappa", "macro_f1")):
            assert value_ci(cell) == (round(m[k], 3), [round(v, 3) for v in m["ci95"][k]])
        assert _num(r[4]) == round(m["fit_seconds"], 2 if m["fit_seconds"] < 10 else 1)
        assert _num(r[5]) == pytest.approx(m["predict_mpx_per_s"], rel=5e-3)
    base = metrics["baselines"]["majority"]
    assert value_ci(rows[len(models)][1]) == (
        round(base["overall_accuracy"], 3),
        [round(v, 3) for v in base["ranking"]["ci95"]["overall_accuracy"]],
    )
    # every model against the constant map: its paired OA gain and interval
    for r in _md_table(md, "model | no-skill baseline |"):
        gain = models[r[0]]["vs_baselines"]["majority"]
        assert r[1] == "majority (forest)"
        assert (r[2], _ci(r[3])) == (f"{gain['difference']:+.3f}", [round(v, 3) for v in gain["ci95"]])
    # the significance sentence names the best model, the runner-up and the Holm-adjusted p-value
    order = sorted(models, key=lambda m: -models[m]["overall_accuracy"])
    pair = next(d for d in metrics["pairwise"] if {d["a"], d["b"]} == set(order[:2]))
    sentence = next(ln for ln in md.splitlines() if ln.startswith("**Best model:"))
    assert order[0] in sentence and order[1] in sentence
    p_txt = "p < 0.001" if pair["p_value"] < 0.001 else f"p = {pair['p_value']:.3f}"
    assert f"paired block bootstrap over 30 blocks, Holm-adjusted {p_txt}" in sentence
    assert ("is not significant" in sentence) == (pair["p_value"] >= 0.05)

    # per-class tables: one per metric, one column per model, cells looked up by header
    md_lines = md.splitlines()
    for key, title in (
        ("precision", "User's accuracy (precision)"),
        ("recall", "Producer's accuracy (recall)"),
        ("f1", "F1"),
    ):
        i = md_lines.index(f"### {title}")
        headers = [c.strip() for c in md_lines[i + 2].strip("|").split("|")]
        assert set(models) <= set(headers)
        for ln in md_lines[i + 4 :]:
            if not ln.startswith("|"):
                break
            cells = dict(zip(headers, (c.strip() for c in ln.strip("|").split("|"))))
            pc = {m: models[m]["per_class"][cells["class"]] for m in models}
            for m in models:
                assert cells[m] == ("–" if pc[m][key] is None else f"{pc[m][key]:.3f}")
            if key == "precision":
                assert _num(cells["test pixels"]) == pc[next(iter(models))]["support"]

    # random-versus-spatial table and the pairwise tests (Holm-adjusted p-values)
    pw = _md_table(md, "model A |")
    assert len(pw) == len(metrics["pairwise"]) == len(models) * (len(models) - 1) // 2
    for r in pw:
        d = next(d for d in metrics["pairwise"] if (d["a"], d["b"]) == (r[0], r[1]))
        assert r[4] == ("< 0.001" if d["p_value"] < 0.001 else f"{d['p_value']:.3f}")
        assert _num(r[2]) == round(d["overall_accuracy"]["difference"], 3)
        assert r[8] == ("yes" if d["p_value"] < 0.05 else "no")
    gap_hdr = "| model | random split OA | spatial split OA | gap |"
    j = md.splitlines().index(gap_hdr)
    for ln in md.splitlines()[j + 2 :]:
        if not ln.startswith("|"):
            break
        m, rnd, spat, gap = [c.strip() for c in ln.strip("|").split("|")]
        c = metrics["random_split_contrast"][m]
        assert (_num(rnd), _num(spat), _num(gap)) == tuple(
            round(c[k], 3) for k in ("overall_accuracy_random", "overall_accuracy_spatial", "gap")
        )

    # area tables: pixel counts, mapped and adjusted areas with their intervals over blocks
    for m in models:
        k = md.index(f"### {m}\n", md.index("## Class areas"))
        for cells in _md_table(md[k:], "class | mapped pixels |"):
            ca = models[m]["class_areas"][cells[0]]
            aa = models[m]["area_adjusted"]["classes"][cells[0]]
            assert int(_num(cells[1])) == ca["pixels"]
            assert _num(cells[2]) == round(ca["area_ha"], 1)
            if aa["area_ha"] is not None:  # the estimate and its interval over blocks
                est, ci = cells[4].split(" ", 1)
                lo, hi = models[m]["area_adjusted"]["ci95_units"]["classes"][cells[0]]["area_ha"]
                assert (_num(est), _ci(ci)) == (round(aa["area_ha"], 1), [round(lo, 1), round(hi, 1)])

    # one table comparing the models' areas, class by class (every class x model pair once)
    rows = _md_table(md, "class | model | mapped area (ha) |")
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (n, m) for n in models[next(iter(models))]["class_areas"] for m in models
    )
    for cls, m, mapped, adjusted in rows:
        assert _num(mapped) == round(models[m]["class_areas"][cls]["area_ha"], 1)
        aa = models[m]["area_adjusted"]["classes"][cls]
        if aa["area_ha"] is None:
            assert adjusted == "not estimable"
        else:
            est, ci = adjusted.split(" ", 1)
            lo, hi = models[m]["area_adjusted"]["ci95_units"]["classes"][cls]["area_ha"]
            assert (_num(est), _ci(ci)) == (round(aa["area_ha"], 1), [round(lo, 1), round(hi, 1)])

    # colour swatches, audit and run facts
    assert 'class="sw" style="background:#33a02c"' in html
    assert "Classes with no test samples: urban." in md
    assert "train patches touching test pixels" in md and "dropped by the buffer: 77" in md
    assert "| train | 100.2 | yes |" in md or "| train | 100.3 | yes |" in md
    assert "| split | 1.50 | no |" in md


def test_report_tolerates_minimal_run(tmp_path):
    run, metrics = make_run_dir(tmp_path, deep=False, contrast=False)
    # strip optional parts
    m = json.loads((run / "metrics.json").read_text())
    for r in m["models"].values():
        r.pop("ci95"), r.pop("area_adjusted"), r.pop("class_areas"), r.pop("ranking"), r.pop("vs_baselines")
    m["pairwise"] = []
    m.pop("baselines"), m.pop("statistics")
    m.pop("split")
    m.pop("labels")
    (run / "metrics.json").write_text(json.dumps(m))
    for p in ("manifest.json", "config.yaml", "split_map.png", "maps/random_forest.png"):
        (run / p).unlink()
    for p in (run / "maps").glob("*.tif"):
        p.unlink()
    html, md = write_report(run)
    text = md.read_text()
    assert "Random versus spatial" not in text and "Learning curves" not in text
    assert "No test between the two is recorded" in text
    assert "<img" not in html.read_text() or "data:image/png;base64," in html.read_text()


def test_publish_artifacts_noop_outside_flow_and_publishes_inside(tmp_path, monkeypatch):
    run, metrics = make_run_dir(tmp_path, deep=False)
    publish_artifacts(run)  # no flow run: nothing happens, nothing raises

    import prefect.artifacts
    from prefect.context import FlowRunContext

    calls = []
    monkeypatch.setattr(FlowRunContext, "get", classmethod(lambda cls: types.SimpleNamespace(flow_run=object())))
    monkeypatch.setattr(prefect.artifacts, "create_table_artifact", lambda **kw: calls.append(("table", kw)))
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda **kw: calls.append(("md", kw)))
    publish_artifacts(run)
    by_key = {c[1]["key"]: c for c in calls}
    assert [(c[0], c[1]["key"]) for c in calls] == [
        ("md", "run-headline"),
        ("table", "model-comparison"),
        ("md", "land-cover-report"),
    ]
    table = by_key["model-comparison"][1]["table"]
    assert {r["model"] for r in table} == set(metrics["models"]) | {"no-skill: majority (forest)"}
    assert "report.html" in by_key["land-cover-report"][1]["markdown"]
    assert all(re.fullmatch(r"[a-z0-9-]+", key) for key in by_key)
    # the headline artifact opens with the run id and the report's own headline
    from pipeline.report.format import md_text
    from pipeline.report.ranking import headline_text

    headline = by_key["run-headline"][1]["markdown"]
    assert headline.startswith(f"# {md_text(run.name)}\n\n**{md_text(headline_text(metrics))}**")
    conclusive = (metrics.get("evidence") or {}).get("conclusive")
    want = {True: "conclusive", False: "inconclusive"}.get(conclusive, "not recorded")
    assert f"- Evaluation: {want}" in headline


def test_table_cells_follow_their_header_not_their_position(tmp_path):
    from pipeline.report.document import Document

    doc = Document(tmp_path)
    doc.table([{"class": "water", "a": "1", "b": "2"}, {"b": "4", "class": "forest"}, {"class": "urban", "c": "9"}])
    doc.table([])  # nothing to show adds nothing
    md = doc.markdown()
    assert md.splitlines()[:5] == [
        "| class | a | b | c |",
        "|---|---|---|---|",
        "| water | 1 | 2 | – |",
        "| forest | – | 4 | – |",
        "| urban | – | – | 9 |",
    ]
    assert md.count("| class |") == 1


def test_report_sections_are_one_list(tmp_path, monkeypatch):
    """A section is one function in page.SECTIONS; it sees the loaded run and adds to the document."""
    from pipeline.report import page
    from pipeline.report.format import fmt

    run, metrics = make_run_dir(tmp_path, deep=False)
    seen = {}

    def section_extra(doc, ctx):
        seen["order"] = ctx.order
        doc.h(2, "Extra")
        doc.table([{"model": m, "oa": fmt(ctx.models[m]["overall_accuracy"])} for m in ctx.order])

    monkeypatch.setattr(page, "SECTIONS", [*page.SECTIONS[:2], section_extra, *page.SECTIONS[2:]])
    _, md = write_report(run)
    text = md.read_text()
    assert seen["order"][0] == max(metrics["models"], key=lambda m: metrics["models"][m]["overall_accuracy"])
    assert text.index("## Run summary") < text.index("## Extra") < text.index("### Classes")
    assert _md_table(text, "model | oa |")[0] == [
        seen["order"][0],
        f"{metrics['models'][seen['order'][0]]['overall_accuracy']:.3f}",
    ]


def test_per_class_tables_fit_six_models_and_flag_classes(tmp_path):
    """Six models: undefined scores show "–", classes no model gets right or without test pixels are flagged."""
    from pipeline.evaluation.metrics import classification_metrics

    rng = np.random.default_rng(3)
    y = rng.choice([1, 2], 400)  # urban (3) has no test pixels
    names6 = ["decision_tree", "random_forest", "svm", "max_likelihood", "cnn", "resnet"]
    models = {}
    for i, m in enumerate(names6):
        pred = np.where(rng.random(400) < 0.6 + 0.05 * i, y, 2)  # water often mapped as forest
        pred[y == 1] = 2 if i % 2 else np.where(pred[y == 1] == 1, 3, 2)  # no model gets a water pixel right
        models[m] = classification_metrics(y, pred, IDS, NAMES)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"classes": CLASSES, "models": models}, allow_nan=False))
    _, md_path = write_report(run)
    md = md_path.read_text()
    assert "Flagged classes: water (no model gets a test pixel right); urban (no test pixels)." in md
    rows = {r[0]: r for r in _md_table(md, "class | test pixels |")}
    header = next(ln for ln in md.splitlines() if ln.startswith("| class | test pixels |"))
    assert header.strip("| ").split(" | ")[-1] == "flag" and len(rows["urban"]) == 2 + 6 + 1
    assert rows["urban"][1] == "0" and rows["urban"][-1] == "no test pixels"
    assert rows["water"][-1] == "no model gets a test pixel right" and rows["forest"][-1] == ""
    # odd models never predict water: precision undefined ("–"); urban has no recall anywhere
    odd = [names6.index(m) for m in names6 if names6.index(m) % 2]
    assert all(rows["water"][2 + k] == "–" for k in odd)
    recall = {r[0]: r for r in _md_table(md.split("### Producer's accuracy (recall)")[1], "class |")}
    assert recall["urban"][1:] == ["–"] * 6


def test_confidence_section_flags_degenerate_layers(tmp_path):
    run, metrics = make_run_dir(tmp_path, deep=False)
    m = json.loads((run / "metrics.json").read_text())
    m["models"]["svm"]["confidence"] = {
        "levels": 2,
        "degenerate": True,
        "mean_correct": 0.9,
        "mean_wrong": 0.85,
        "auc": 0.52,
    }
    m["models"]["svm"]["fit_info"] = {"confidence": "ovo_vote_share"}
    m["models"]["random_forest"]["confidence"] = {
        "levels": 140,
        "degenerate": False,
        "mean_correct": 0.8,
        "mean_wrong": 0.55,
        "auc": 0.81,
    }
    (run / "metrics.json").write_text(json.dumps(m))
    _, md = write_report(run)
    text = md.read_text()
    assert "**Degenerate confidence layers: svm (2 distinct values)." in text
    rows = {r[0]: r for r in _md_table(text, "model | confidence is |")}
    assert set(rows) == {"svm", "random_forest"}
    assert rows["svm"][1:] == [
        "share of one-vs-one contests won (not a probability)",
        "2",
        "0.900",
        "0.850",
        "0.520",
        "degenerate",
    ]
    assert rows["random_forest"][1:] == ["share of trees voting for the class", "140", "0.800", "0.550", "0.810", ""]


def _chromium():
    import shutil

    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("no headless Chromium on this machine")
    return exe


_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)


def _layout_in_chromium(html_path, tmp_path, width=1400, print_media=False):
    """Load the report in headless Chromium at ``width`` px and return what overflows: tables wider
    than the page, boxes that scroll sideways, and the page's own horizontal overflow.
    ``print_media``: the report's print stylesheet applies (as when printing)."""
    import subprocess

    exe = _chromium()
    switch = "document.querySelectorAll('style[media=print]').forEach(s=>{s.media='all'});" if print_media else ""
    probe = (
        "<script>window.addEventListener('load',()=>{" + switch + "const out={tables:[],scroll:[],images:[],page:0};"
        "const body=document.body.getBoundingClientRect();"
        "document.querySelectorAll('img').forEach((m,i)=>{const r=m.getBoundingClientRect();"
        "if(r.right>body.right+1)out.images.push([i,m.alt,Math.round(r.width)]);});"
        "document.querySelectorAll('table').forEach((t,i)=>{const r=t.getBoundingClientRect();"
        "if(r.right>body.right+1)out.tables.push([i,t.rows[0].innerText.slice(0,60),Math.round(r.width)]);});"
        "document.querySelectorAll('.scroll').forEach((d,i)=>{if(d.scrollWidth>d.clientWidth+1)"
        "out.scroll.push([i,d.innerText.slice(0,60),d.scrollWidth,d.clientWidth]);});"
        "out.page=document.documentElement.scrollWidth-window.innerWidth;"
        "const pre=document.createElement('pre');pre.id='layout';pre.textContent=JSON.stringify(out);"
        "document.body.appendChild(pre);});</script>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(html_path.read_text().replace("</body>", probe + "</body>"))
    proc = subprocess.run(
        [
            exe,
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chrome-profile'}",
            f"--window-size={width},1000",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'<pre id="layout">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


def _six_model_report(tmp_path):
    """report.html of a run of six models with every section filled (reference polygons,
    confidence layers)."""
    run, metrics = make_run_dir(tmp_path, six=True)
    m = json.loads((run / "metrics.json").read_text())
    models = list(m["models"])
    assert len(models) == 6
    m["polygons"] = {
        "models": models,
        "contradicted_below": 0.5,
        "suspects": [],
        "polygons": [
            {
                "group": g,
                "class_name": "forest",
                "pixels": 1234,
                "x": 1.0,
                "y": 2.0,
                "accuracy": {k: 0.123 for k in models},
                "mean_accuracy": 0.123,
                "predicted_as": "herbaceous",
                "contradicted": True,
            }
            for g in range(3)
        ],
    }
    for k in models:
        m["models"][k]["confidence"] = {
            "levels": 12,
            "degenerate": False,
            "mean_correct": 0.9,
            "mean_wrong": 0.6,
            "auc": 0.7,
        }
    (run / "metrics.json").write_text(json.dumps(m))
    html_path, _ = write_report(run)
    return html_path


def test_no_table_is_clipped_at_1400_px_with_six_models(tmp_path):
    """Layout rule (document.PAGE_WIDTH_PX): at 1400 px every table of a six-model report fits the page."""
    from pipeline.report.document import PAGE_WIDTH_PX

    html_path = _six_model_report(tmp_path)
    assert f"max-width:{PAGE_WIDTH_PX}px" in html_path.read_text()
    layout = _layout_in_chromium(html_path, tmp_path)
    assert layout["tables"] == [] and layout["scroll"] == [] and layout["page"] <= 0, layout


def test_the_report_prints_to_a_clean_pdf(tmp_path):
    """Printed (headless Chromium, A4): with the print stylesheet every table and figure of a
    six-model report fits the 186 mm text width (703 CSS px), which the screen layout does not, and
    the PDF has several pages, the report's sections and no literal Markdown backticks."""
    import shutil
    import subprocess

    html_path = _six_model_report(tmp_path)
    text_width = round(186 / 25.4 * 96)  # A4 minus the stylesheet's 12 mm side margins
    screen = _layout_in_chromium(html_path, tmp_path, width=text_width)
    assert screen["scroll"] or screen["tables"], "the check must be able to fail: screen CSS overflows A4"
    printed = _layout_in_chromium(html_path, tmp_path, width=text_width, print_media=True)
    assert printed["tables"] == [] and printed["scroll"] == [] and printed["images"] == [], printed
    assert printed["page"] <= 0, printed
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [
            _chromium(),
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chrome-print'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html_path.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?!s)", data)) >= 2
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=60).stdout
        assert "Error matrices" in text and "Model comparison" in text
        assert "`" not in text


def test_commands_in_the_report_are_code_not_literal_backticks(tmp_path):
    """Commands and keys in the report's prose are ``<code>`` in HTML and code spans in Markdown;
    a backtick in a class name stays literal text (escaped in Markdown), never opens code."""
    from pipeline.report.document import Code, Document

    html_path = _six_model_report(tmp_path)
    visible = re.sub(r"<style.*?</style>|<[^>]+>", "", html_path.read_text(), flags=re.S)
    assert "`" not in visible
    assert "<code>landcover assess-design</code>" in html_path.read_text()
    assert "`landcover assess-design`" in html_path.with_suffix(".md").read_text()
    doc = Document(tmp_path)
    doc.p(["class a`b mapped by ", Code("landcover map"), " and ", Code("x`y")])
    assert doc.markdown().strip() == r"class a\`b mapped by `landcover map` and ``x`y``"
    assert "class a`b mapped by <code>landcover map</code> and <code>x`y</code>" in doc.html("t")


def test_models_and_inputs_table_reads_each_models_fit_info(tmp_path):
    """The "Models and inputs" table: what each model saw, its chosen hyper-parameters and the fit
    time the fit measured, from fit_info (a deep model that reports no inputs: its patch)."""
    run, _ = make_run_dir(tmp_path, deep=True)
    m = json.loads((run / "metrics.json").read_text())
    bands = ["blue", "green", "red", "nir"]
    m["models"]["random_forest"]["fit_info"] = {
        "fit_seconds": 0.031,
        "n_features": 14,
        "inputs": {
            "centre_pixel": True,
            "indices": ["ndvi", "ndwi"],
            "context_stats": ["mean", "std"],
            "window": 9,
            "bands": bands,
        },
        "hyperparameters": {"trees": 200, "depth (deepest tree)": 27},
    }
    m["models"]["svm"]["fit_info"] = {
        "fit_seconds": 4.5,
        "n_features": 4,
        "inputs": {"centre_pixel": True, "indices": [], "context_stats": [], "window": 1, "bands": bands},
        "hyperparameters": {"C": 10.0, "gamma": "scale (0.25)"},
    }
    m["models"]["cnn"]["fit_info"] = {"fit_seconds": 61.0, "epochs_run": 12, "best_epoch": 9, "parameters": 5000}
    (run / "metrics.json").write_text(json.dumps(m))
    (run / "config.yaml").write_text("name: t\npatch: {size: 9}\n")
    _, md = write_report(run)
    rows = {r[0]: r for r in _md_table(md.read_text(), "model | sees |")}
    assert rows["random_forest"][1:] == [
        "centre pixel; indices ndvi, ndwi; mean and std over 9 x 9 window",
        "blue, green, red, nir",
        "14",
        "trees 200; depth (deepest tree) 27",
        "0.03",  # the fit's own time, not the stage's fit_seconds (1.234 * 2)
    ]
    assert rows["svm"][1] == "centre pixel" and rows["svm"][4] == "C 10; gamma scale (0.25)"
    assert (
        rows["cnn"][1] == "9 x 9 patch of every band" and rows["cnn"][4] == "epochs run 12; best epoch 9; weights 5000"
    )
    assert rows["cnn"][5] == "61.0" and rows["decision_tree"][1:] == ["–", "–", "–", "–", "–"]
