"""Can the test set support the run's figures? The verdict behind the report's headline.

A ranking of models, or an accuracy with a 95% interval, from three test pixels or from one
test polygon per class is noise presented as a result; a random (or user-supplied) split, or
any training patch touching a test pixel, inflates accuracy. :func:`assess_evidence` turns the
test set and the split record into ``metrics.json["evidence"]``::

    {"conclusive": bool, "reasons": [str], "leakage": bool, "leakage_reasons": [str],
     "test_set": {"pixels", "blocks", "polygons", "per_class": {name: {"pixels", "blocks", "polygons"}}}}

``conclusive`` is False when any of the thresholds below is not met (then no best model is
named); ``leakage`` is True for a ``random`` or ``predefined`` split or a non-zero audit count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.split.audit import AUDIT_KEYS

MIN_TEST_PIXELS = 30  # whole test set
MIN_CLASS_TEST_PIXELS = 5  # per class present in the labels
MIN_CLASS_TEST_UNITS = 2  # distinct blocks and polygons (points) per class in the test set
# A predefined split is audited (the audit is reported) but nothing is buffered or moved: say that, not
# "not spatially checked", which the audit table of the same report contradicts.
LEAKY_STRATEGIES = {"random": "a random pixel split", "predefined": "a user-supplied split with no buffer enforced"}


def summarise_test_set(
    y: np.ndarray, blocks: np.ndarray, groups: np.ndarray, class_ids: list[int], class_names: list[str]
) -> dict[str, Any]:
    """Pixels, blocks and polygons of the test set, overall and per class.

    y, blocks, groups : (n,) class id, spatial block and source polygon/point of each test pixel.
    """
    y, blocks, groups = (np.asarray(a) for a in (y, blocks, groups))
    per = {}
    for cid, name in zip(class_ids, class_names):
        m = y == cid
        per[name] = {
            "pixels": int(m.sum()),
            "blocks": int(np.unique(blocks[m]).size),
            "polygons": int(np.unique(groups[m]).size),
        }
    return {
        "pixels": len(y),
        "blocks": int(np.unique(blocks).size),
        "polygons": int(np.unique(groups).size),
        "per_class": per,
    }


def assess_evidence(test_set: dict[str, Any], split: dict[str, Any], skip_classes: list[str] | None = None) -> dict:
    """The verdict on a test set (:func:`summarise_test_set`) and a split record (``split.json``).

    ``skip_classes``: classes without any usable label (reported elsewhere; they cannot be tested).
    """
    skip = set(skip_classes or [])
    reasons: list[str] = []
    n = test_set["pixels"]
    if n < MIN_TEST_PIXELS:
        reasons.append(f"only {n} test pixel{'s' if n != 1 else ''} (at least {MIN_TEST_PIXELS} are needed)")
    few_px, few_units = [], []
    for name, c in test_set["per_class"].items():
        if name in skip:
            continue
        if c["pixels"] < MIN_CLASS_TEST_PIXELS:
            few_px.append(f"{name} {c['pixels']}")
        elif min(c["blocks"], c["polygons"]) < MIN_CLASS_TEST_UNITS:
            unit = "block" if c["blocks"] <= c["polygons"] else "polygon"
            few_units.append(f"{name} (1 {unit})")
    if few_px:
        reasons.append(f"fewer than {MIN_CLASS_TEST_PIXELS} test pixels for class(es) " + ", ".join(few_px))
    if few_units:
        reasons.append(
            f"test pixels from fewer than {MIN_CLASS_TEST_UNITS} blocks or polygons for class(es) "
            + ", ".join(few_units)
            + ": no independent replicate"
        )
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
        "leakage": bool(leak),
        "leakage_reasons": leak,
        "test_set": test_set,
    }


def headline(evidence: dict | None, best_sentence: str) -> str:
    """The report's first sentence(s): the leakage warning, then the verdict or ``best_sentence``."""
    if not evidence:
        return best_sentence
    parts = []
    if evidence.get("leakage"):
        parts.append("Accuracy inflated by spatial leakage: " + "; ".join(evidence.get("leakage_reasons") or []) + ".")
    if evidence.get("conclusive", True):
        parts.append(best_sentence)
    else:
        parts.append(
            "Evaluation inconclusive: " + "; ".join(evidence.get("reasons") or []) + ". No best model is "
            "named; the accuracies and intervals below rest on too little independent test data to rank "
            "the models."
        )
    return " ".join(parts)
