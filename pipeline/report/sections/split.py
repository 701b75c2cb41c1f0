"""The split: its strategy and what its test measures, counts per class, the split map, the
leakage audit and the random-versus-spatial contrast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt, label_noun


def _split_evidence(split: dict, noun: str = "polygon") -> str:
    """What the test of this split measures, in one sentence or two; ``noun`` names one label."""
    strategy, group_by = split.get("strategy"), split.get("group_by")
    sub = split.get("sub_blocked_classes") or []
    if strategy == "random":
        near = "of the same polygons" if noun == "polygon" else f"and {noun}s close by"
        return (
            f"Random pixel split: test pixels sit next to training pixels {near}, so the "
            "accuracy measures recall of known places, not generalisation (see the leakage audit)."
        )
    if strategy == "predefined":
        return (
            f"User-supplied split ({split.get('source', 'as given')}), honoured as given with no buffer; "
            "the leakage audit below says whether training patches see test pixels."
        )
    if group_by == "scene":
        return "Whole scenes are held out: the test measures generalisation to unseen scenes."
    if sub:
        who = "all classes" if group_by == "block" else "the classes " + ", ".join(map(str, sub))
        rest = "" if group_by == "block" else f" The other classes are tested on unseen {noun}s."
        return (
            f"For {who}, {noun}s were cut into sub-blocks (group = {noun} x block): their test measures "
            f"generalisation to unseen parts of the same {noun}s, spatially separated by the buffer, which "
            f"is weaker evidence than unseen {noun}s.{rest}"
        )
    if noun == "point":
        return (
            "Every point is on one side only, test points kept apart from training points by the buffer: "
            "the test measures generalisation to unseen points."
        )
    return f"Every {noun} lies whole on one side: the test measures generalisation to unseen {noun}s."


def _split_unit(run_dir: Path) -> str:
    """Unit of block size and buffer: that of the split layers' CRS ("m", "degree"), else "map units"."""
    try:
        import pyogrio
        from pyproj import CRS

        crs = pyogrio.read_info(run_dir / "splits.gpkg", layer="blocks").get("crs")
        unit = CRS.from_user_input(crs).axis_info[0].unit_name if crs else ""
    except Exception:  # an older run or no split layers: the generic word is still true
        return "map units"
    return {"metre": "m", "": "map units"}.get(unit, unit)


def _design(split: dict, models: dict, noun: str = "polygon") -> str:
    """What the accuracy figures are computed from, and what the maps come from."""
    k = int(split.get("k") or len(split.get("folds") or []) or 1)
    mapped = next((m.get("mapped") for m in models.values() if m.get("mapped")), None)
    if split.get("strategy") == "kfold":
        evaluated = (
            f"Every {noun} or block is tested once, in the fold that holds it out: the accuracy figures "
            f"come from the pooled out-of-fold predictions of the {k} fold models."
        )
    else:
        evaluated = "The accuracy figures come from the model fitted on the training part, on the test part."
    if mapped is None:
        return evaluated
    return f"{evaluated} The maps come from each model refitted on all labelled data (not from a fold model)."


def _counts_rows(ctx: ReportContext, split: dict) -> list[dict]:
    """Samples per class: per split, or for k folds the test samples of all folds and the mean per fold
    of training and validation."""
    folds = split.get("folds") or []
    if split.get("strategy") == "kfold" and folds:
        rows = []
        for c in ctx.classes:
            n = c["name"]
            per = [(f.get("counts") or {}) for f in folds]
            rows.append(
                {
                    "class": n,
                    "test (all folds)": fmt(sum((p.get("test") or {}).get(n, 0) for p in per), "int"),
                    "train (mean per fold)": fmt(
                        round(sum((p.get("train") or {}).get(n, 0) for p in per) / len(per)), "int"
                    ),
                    "validation (mean per fold)": fmt(
                        round(sum((p.get("validation") or {}).get(n, 0) for p in per) / len(per)), "int"
                    ),
                }
            )
        return rows
    counts = split.get("counts") or {}
    parts = [s for s in ("train", "validation", "test") if s in counts]
    if not parts:
        return []
    return [
        {"class": c["name"], **{s: fmt((counts[s] or {}).get(c["name"], 0), "int") for s in parts}} for c in ctx.classes
    ]


def _set_line(adjusted: dict) -> str:
    return " ".join(
        f"--set split.{k}={'null' if v is None else f'{v:g}' if isinstance(v, float) else v}"
        for k, v in adjusted.items()
    )


def section_split(doc: Document, ctx: ReportContext) -> None:
    split = ctx.split
    if not split:
        return
    doc.h(3, "Split")
    unit = _split_unit(ctx.run_dir)
    folds = f", {split['k']} folds" if split.get("strategy") == "kfold" and split.get("k") else ""
    chosen = f" (chosen by split.strategy auto: {split['auto_reason']})" if split.get("requested") == "auto" else ""
    doc.p(
        f"Strategy: {split.get('strategy', '?')}{folds}{chosen}; block size: {fmt(split.get('block_size'), 'len')} {unit}; "
        f"buffer: {fmt(split.get('buffer'), 'len')} {unit}; seed: {split.get('seed', '–')}; "
        f"samples dropped by the buffer: {fmt(split.get('dropped_by_buffer'), 'int')}."
    )
    if split.get("adjusted"):
        doc.p(
            f"The default settings could not split this input ({split.get('adjusted_because', '')}); the run used "
            f"the nearby setting {_set_line(split['adjusted'])}, tried on this input."
        )
    doc.p(_design(split, ctx.models, label_noun(ctx.metrics.get("labels") or {})))
    doc.p(_split_evidence(split, label_noun(ctx.metrics.get("labels") or {})))
    train_only = split.get("train_only_classes") or []
    if train_only:
        doc.p(
            f"Trained in every fold but never tested (no dealing of the folds could test them and keep training "
            f"data for them in every fold): {', '.join(map(str, train_only))}."
        )
    missing = {k: v for k, v in (split.get("missing_classes") or {}).items() if v}
    for part, names in missing.items():
        doc.p(f"Classes with no {part} samples: {', '.join(map(str, names))}.")
    rows = _counts_rows(ctx, split)
    if rows:
        doc.table(rows)
    doc.images([(ctx.run_dir / "split_map.png", "split map")])


#: Audit entries shown inside the minimum-distance row rather than as rows of their own.
_DISTANCE_PARTS = ("min_train_test_distance_m", "min_train_test_distance_px")


def _distance_text(audit: dict, unit: str) -> str:
    """The nearest training-test pair: in metres and pixels when measured (any CRS), else in map units."""
    d, metres, px = (audit.get(k) for k in ("min_train_test_distance", *_DISTANCE_PARTS))
    if metres is None:
        return "–" if d is None else f"{fmt(d, 'len')} {unit}"
    text = f"{fmt(metres, 'sec')} m ({fmt(px, 'sec')} pixels)"
    return text if unit in ("m", "map units") or d is None else f"{fmt(d, 'len')} {unit} = {text}"


def section_audit(doc: Document, ctx: ReportContext) -> None:
    audit = ctx.split.get("audit") or {}
    if audit:
        doc.h(3, "Leakage audit")
        unit = _split_unit(ctx.run_dir)
        doc.table(
            [
                {
                    "check": "min train-test distance" if k == "min_train_test_distance" else k.replace("_", " "),
                    "value": _distance_text(audit, unit) if k == "min_train_test_distance" else _audit_val(v),
                }
                for k, v in audit.items()
                if k not in _DISTANCE_PARTS
            ]
        )


def _audit_val(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return fmt(v, "int")
    if isinstance(v, float):
        return fmt(v, "sec")
    if v is None:
        return "–"
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def section_random_vs_spatial(doc: Document, ctx: ReportContext) -> None:
    if not ctx.contrast:
        return
    doc.h(3, "Random versus spatial split")
    doc.p(
        "Overall accuracy of the same model fitted and tested on a random pixel split and on the spatial "
        "split; the gap is the optimism of a random split."
    )
    doc.table(
        [
            {
                "model": m,
                "random split OA": fmt(v.get("overall_accuracy_random")),
                "spatial split OA": fmt(v.get("overall_accuracy_spatial")),
                "gap": fmt(v.get("gap")),
            }
            for m, v in ctx.contrast.items()
        ]
    )
