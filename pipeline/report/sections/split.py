"""The split: its strategy and what its test measures, counts per class, the split map, the
leakage audit and the random-versus-spatial contrast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.report.context import ReportContext
from pipeline.report.document import Document
from pipeline.report.format import fmt


def _split_evidence(split: dict) -> str:
    """What the test of this split measures, in one sentence or two."""
    strategy, group_by = split.get("strategy"), split.get("group_by")
    sub = split.get("sub_blocked_classes") or []
    if strategy == "random":
        return (
            "Random pixel split: test pixels sit next to training pixels of the same polygons, so the "
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
        rest = "" if group_by == "block" else " The other classes are tested on unseen polygons."
        return (
            f"For {who}, polygons were cut into sub-blocks (group = polygon x block): their test measures "
            "generalisation to unseen parts of the same polygons, spatially separated by the buffer, which "
            f"is weaker evidence than unseen polygons.{rest}"
        )
    return "Every polygon lies whole on one side: the test measures generalisation to unseen polygons."


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


def section_split(doc: Document, ctx: ReportContext) -> None:
    split = ctx.split
    if not split:
        return
    doc.h(3, "Split")
    unit = _split_unit(ctx.run_dir)
    doc.p(
        f"Strategy: {split.get('strategy', '?')}; block size: {fmt(split.get('block_size'), 'len')} {unit}; "
        f"buffer: {fmt(split.get('buffer'), 'len')} {unit}; seed: {split.get('seed', '–')}; "
        f"samples dropped by the buffer: {fmt(split.get('dropped_by_buffer'), 'int')}."
    )
    if split.get("k"):
        doc.p(f"Folds: {split['k']} (the tables show the first fold's counts).")
    doc.p(_split_evidence(split))
    missing = {k: v for k, v in (split.get("missing_classes") or {}).items() if v}
    for part, names in missing.items():
        doc.p(f"Classes with no {part} samples: {', '.join(map(str, names))}.")
    counts = split.get("counts") or {}
    parts = [s for s in ("train", "validation", "test") if s in counts]
    if parts:
        doc.table(
            [
                {"class": c["name"], **{s: fmt((counts[s] or {}).get(c["name"], 0), "int") for s in parts}}
                for c in ctx.classes
            ]
        )
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
