"""Can the test set support the run's figures? The verdict behind the report's headline.

Two levels. A **class** is *assessable* when its test pixels come from at least
:data:`MIN_CLASS_TEST_UNITS` polygons and as many blocks (independent replicates) and number at
least :data:`MIN_CLASS_TEST_PIXELS`; a class tested on a single polygon says how the models map
that polygon, not the class. Classes that are not assessable are listed with the reason and left
out of the ranking figures (their pixels do not count; predictions into them stay errors); the
models are ranked on the assessable classes. The **run** is inconclusive only when that
assessable part is too small to rank anything: too few pixels, fewer than 2 assessable classes
or under half of the labelled classes, or fewer than :data:`MIN_TEST_UNITS` blocks for a
group-level interval. A random (or user-supplied) split, or any training patch touching a test
pixel, inflates accuracy: ``leakage``. :func:`assess_evidence` turns the test set and the split
record into ``metrics.json["evidence"]``::

    {"conclusive": bool, "reasons": [str], "leakage": bool, "leakage_reasons": [str],
     "assessable_classes": [name], "not_assessable": {name: why},
     "test_set": {"pixels", "blocks", "polygons",
                  "per_class": {name: {"pixels", "blocks", "polygons", "assessable", "why"}},
                  "ranking": {"classes", "pixels", "blocks", "polygons"}}}

``conclusive`` is False when the assessable part is too small (then no best model is named).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.split.audit import AUDIT_KEYS

MIN_TEST_PIXELS = 30  # whole test set, and its assessable part
MIN_CLASS_TEST_PIXELS = 5  # per assessable class
MIN_CLASS_TEST_UNITS = 2  # distinct blocks and polygons (points) per assessable class
#: Blocks the assessable test pixels must come from: a percentile bootstrap over fewer clusters
#: gives intervals far too narrow (Cameron, Gelbach & Miller 2008 find it unreliable below ~10).
MIN_TEST_UNITS = 10
#: Share of the labelled classes that must be assessable for a ranking to speak for the legend.
MIN_ASSESSABLE_SHARE = 0.5
# A predefined split is audited (the audit is reported) but nothing is buffered or moved: say that, not
# "not spatially checked", which the audit table of the same report contradicts.
LEAKY_STRATEGIES = {"random": "a random pixel split", "predefined": "a user-supplied split with no buffer enforced"}


def class_verdict(c: Mapping[str, int], noun: str = "polygon") -> str | None:
    """Why a class with these test counts (``pixels``, ``blocks``, ``polygons``) is not
    assessable, or ``None`` when it is. ``noun``: what one label is called (the ``polygons``
    count holds points for point labels, labelled regions for a label raster)."""
    px, blocks, polys = int(c.get("pixels", 0)), int(c.get("blocks", 0)), int(c.get("polygons", 0))
    if px == 0:
        return "no test pixels"
    if polys < MIN_CLASS_TEST_UNITS:
        return f"tested on {polys} {noun}{'s' if polys != 1 else ''} only"
    if blocks < MIN_CLASS_TEST_UNITS:
        return f"tested in {blocks} block{'s' if blocks != 1 else ''} only"
    if px < MIN_CLASS_TEST_PIXELS:
        return f"only {px} test pixel{'s' if px != 1 else ''}"
    return None


def summarise_test_set(
    y: np.ndarray,
    blocks: np.ndarray,
    groups: np.ndarray,
    class_ids: list[int],
    class_names: list[str],
    without_labels: Mapping[str, str] | None = None,
    noun: str = "polygon",
) -> dict[str, Any]:
    """Pixels, blocks and polygons of the test set, overall, per class, and for the assessable classes.

    y, blocks, groups : (n,) class id, spatial block and source polygon/point of each test pixel.
    without_labels : classes with no usable label at all, and why (``labels.json``).
    noun : what one label is called in the reasons ("polygon", "point", "labelled region").
    """
    y, blocks, groups = (np.asarray(a) for a in (y, blocks, groups))
    skip = dict(without_labels or {})
    per: dict[str, dict[str, Any]] = {}
    ranked: list[int] = []
    for cid, name in zip(class_ids, class_names):
        m = y == cid
        c: dict[str, Any] = {
            "pixels": int(m.sum()),
            "blocks": int(np.unique(blocks[m]).size),
            "polygons": int(np.unique(groups[m]).size),
        }
        why = f"no usable labels ({skip[name]})" if name in skip else class_verdict(c, noun)
        c.update(assessable=why is None, why=why)
        per[name] = c
        if why is None:
            ranked.append(cid)
    r = np.isin(y, ranked)
    return {
        "pixels": len(y),
        "blocks": int(np.unique(blocks).size),
        "polygons": int(np.unique(groups).size),
        "per_class": per,
        "ranking": {
            "classes": [n for n, c in per.items() if c["assessable"]],
            "pixels": int(r.sum()),
            "blocks": int(np.unique(blocks[r]).size),
            "polygons": int(np.unique(groups[r]).size),
        },
    }


def _run_reasons(test_set: dict[str, Any], skip: set[str]) -> list[str]:
    """Why the assessable part of the test set is too small to rank models (empty: it is not)."""
    reasons: list[str] = []
    n = test_set["pixels"]
    if n < MIN_TEST_PIXELS:
        return [f"only {n} test pixel{'s' if n != 1 else ''} (at least {MIN_TEST_PIXELS} are needed)"]
    per = test_set["per_class"]
    labelled = [k for k in per if k not in skip]
    rk = test_set.get("ranking") or {}
    ok = [k for k in labelled if per[k].get("assessable", class_verdict(per[k]) is None)]
    if len(ok) < 2:
        reasons.append(f"only {len(ok)} assessable class{'es' if len(ok) != 1 else ''} (at least 2 are needed)")
    elif len(ok) < MIN_ASSESSABLE_SHARE * len(labelled):
        reasons.append(
            f"only {len(ok)} of {len(labelled)} labelled classes are assessable (at least half are needed "
            "for a ranking that speaks for the legend)"
        )
    px = rk.get("pixels", sum(per[k]["pixels"] for k in ok))
    if ok and px < MIN_TEST_PIXELS:
        reasons.append(f"only {px} test pixels in the assessable classes (at least {MIN_TEST_PIXELS} are needed)")
    blocks = rk.get("blocks")
    if ok and blocks is not None and blocks < MIN_TEST_UNITS:
        reasons.append(
            f"the assessable test pixels come from {blocks} block{'s' if blocks != 1 else ''} (at least "
            f"{MIN_TEST_UNITS} independent units are needed for a group-level interval)"
        )
    return reasons


def assess_evidence(test_set: dict[str, Any], split: dict[str, Any], skip_classes: list[str] | None = None) -> dict:
    """The verdict on a test set (:func:`summarise_test_set`) and a split record (``split.json``).

    ``skip_classes``: classes without any usable label (they cannot be tested; listed as not
    assessable, but they do not count against the run).
    """
    skip = set(skip_classes or [])
    per = test_set["per_class"]
    not_assessable = {}
    for name, c in per.items():
        why = c.get("why") if "assessable" in c else class_verdict(c)
        if name in skip and why is None:
            why = "no usable labels"
        if why is not None:
            not_assessable[name] = why
    reasons = _run_reasons(test_set, skip)
    if reasons and not_assessable:
        reasons.append("not assessable: " + ", ".join(f"{k} ({v})" for k, v in not_assessable.items()))
    leak: list[str] = []
    strategy = split.get("strategy")
    if strategy in LEAKY_STRATEGIES:
        leak.append(f"{LEAKY_STRATEGIES[strategy]} (split.strategy: {strategy})")
    audit = split.get("audit") or {}
    touching = {k: int(audit.get(k) or 0) for k in AUDIT_KEYS[1:]}
    if any(touching.values()):
        leak.append(
            "the leakage audit counts " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in touching.items() if v)
        )
    return {
        "conclusive": not reasons,
        "reasons": reasons,
        "assessable_classes": [k for k in per if k not in not_assessable],
        "not_assessable": not_assessable,
        "leakage": bool(leak),
        "leakage_reasons": leak,
        "test_set": test_set,
    }


def not_assessable_sentence(evidence: dict | None, noun: str = "polygon") -> str:
    """The classes left out of the ranking and why, as a sentence ("" when there are none);
    ``noun``: what one label is called."""
    na = (evidence or {}).get("not_assessable") or {}
    if not na:
        return ""
    return (
        f"Not assessable (tested on fewer than {MIN_CLASS_TEST_UNITS} {noun}s or blocks, or without test pixels), "
        "left out of the ranking: " + "; ".join(f"{k} ({v})" for k, v in na.items()) + "."
    )


def basis_sentence(evidence: dict | None, noun: str = "polygon") -> str:
    """What the ranking rests on, e.g. "Ranked on 6 assessable classes: 2,075 test pixels from 31
    polygons in 31 blocks." ("" for a run from before the ranking set existed); ``noun``: what
    one label is called ("200 test pixels from 200 points")."""
    rk = ((evidence or {}).get("test_set") or {}).get("ranking")
    if not rk:
        return ""
    n, units = len(rk.get("classes") or []), int(rk.get("polygons", 0))
    return (
        f"Ranked on {n} assessable class{'es' if n != 1 else ''}: {int(rk.get('pixels', 0)):,} test pixels from "
        f"{units:,} {noun}{'s' if units != 1 else ''} in {int(rk.get('blocks', 0)):,} blocks."
    )


def headline(evidence: dict | None, best_sentence: str, noun: str = "polygon") -> str:
    """The report's first sentence(s): the leakage warning, then the verdict or ``best_sentence``
    with what the ranking rests on and the classes left out of it; ``noun``: what one label is
    called (``pipeline.report.format.label_noun``)."""
    if not evidence:
        return best_sentence
    parts = []
    if evidence.get("leakage"):
        parts.append("Accuracy inflated by spatial leakage: " + "; ".join(evidence.get("leakage_reasons") or []) + ".")
    if evidence.get("conclusive", True):
        parts.append(best_sentence)
        for extra in (basis_sentence(evidence, noun), not_assessable_sentence(evidence, noun)):
            if extra:
                parts.append(extra)
    else:
        parts.append(
            "Evaluation inconclusive: " + "; ".join(evidence.get("reasons") or []) + ". No best model is "
            "named; the accuracies and intervals below rest on too little independent test data to rank "
            "the models."
        )
    return " ".join(parts)
