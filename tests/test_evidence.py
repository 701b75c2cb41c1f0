"""The honest headline (issue #11 item 7): inconclusive evaluations and leaky splits are said so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from unseen_scenes import points_scene, utm_scene

from pipeline.evaluation.evidence import assess_evidence, headline, summarise_test_set

NAMES = ["water", "forest"]


NAMES3 = ["water", "forest", "urban"]


def _summary(per_class_px, per_class_units, names=NAMES):
    y, blocks, groups = [], [], []
    unit = 0
    for cid, (n, u) in enumerate(zip(per_class_px, per_class_units), 1):
        y += [cid] * n
        ids = [unit + (i % u) for i in range(n)] if u else []
        blocks += ids
        groups += ids
        unit += max(u, 1)
    ids = list(range(1, len(names) + 1))
    return summarise_test_set(np.array(y), np.array(blocks), np.array(groups), ids, names)


BLOCKS = {"strategy": "blocks", "audit": {"train_patches_touching_test_pixels": 0}}


def test_thresholds():
    ok = assess_evidence(_summary([20, 30], [5, 6]), BLOCKS)
    assert ok["conclusive"] and not ok["reasons"] and not ok["leakage"] and not ok["not_assessable"]
    assert ok["test_set"]["per_class"]["water"] == {
        "pixels": 20,
        "blocks": 5,
        "polygons": 5,
        "assessable": True,
        "why": None,
    }
    assert ok["test_set"]["ranking"] == {"classes": NAMES, "pixels": 50, "blocks": 11, "polygons": 11}
    few = assess_evidence(_summary([26, 3], [3, 2]), BLOCKS)  # 29 pixels in all
    assert not few["conclusive"]
    assert few["reasons"] == [
        "only 29 test pixels (at least 30 are needed)",
        "not assessable: forest (only 3 test pixels)",
    ]
    # ten blocks are needed for a group-level interval, however many pixels
    thin = assess_evidence(_summary([200, 300], [4, 5]), BLOCKS)
    assert thin["reasons"] == [
        "the assessable test pixels come from 9 blocks (at least 10 independent units are needed for a "
        "group-level interval)"
    ]
    # a class without any usable label is reported elsewhere: listed as not assessable, not held against the run
    no_lab = assess_evidence(_summary([40, 0], [12, 0]), BLOCKS, skip_classes=["forest"])
    assert not no_lab["conclusive"]  # but a ranking needs two classes
    assert no_lab["reasons"][0] == "only 1 assessable class (at least 2 are needed)"


def test_a_class_on_one_polygon_is_not_assessable_but_the_run_is():
    # water tested on one polygon: listed and left out; forest and urban rank the models
    ev = assess_evidence(_summary([20, 40, 30], [1, 6, 5], NAMES3), BLOCKS)
    assert ev["conclusive"] and ev["reasons"] == []
    assert ev["not_assessable"] == {"water": "tested on 1 polygon only"}
    assert ev["assessable_classes"] == ["forest", "urban"]
    assert ev["test_set"]["ranking"] == {"classes": ["forest", "urban"], "pixels": 70, "blocks": 11, "polygons": 11}
    text = headline(ev, "Best model: svm (overall accuracy 0.900).")
    assert text.startswith("Best model: svm (overall accuracy 0.900). Ranked on 2 assessable classes: 70 test ")
    assert text.endswith("left out of the ranking: water (tested on 1 polygon only).")
    # ... unless the assessable part is under half of the labelled classes
    ev = assess_evidence(_summary([20, 40, 30, 9], [1, 12, 1, 1], [*NAMES3, "bare"]), BLOCKS)
    assert not ev["conclusive"]
    assert ev["reasons"] == [
        "only 1 assessable class (at least 2 are needed)",
        "not assessable: water (tested on 1 polygon only), urban (tested on 1 polygon only), "
        "bare (tested on 1 polygon only)",
    ]
    ev = assess_evidence(_summary([20, 40, 30, 9, 9], [1, 6, 5, 1, 1], [*NAMES3, "bare", "snow"]), BLOCKS)
    assert ev["reasons"][0] == (
        "only 2 of 5 labelled classes are assessable (at least half are needed for a ranking that speaks for "
        "the legend)"
    )
    # few pixels in a class tested on several polygons: not assessable either
    ev = assess_evidence(_summary([3, 40, 30], [3, 6, 5], NAMES3), BLOCKS)
    assert ev["not_assessable"] == {"water": "only 3 test pixels"} and ev["conclusive"]


@pytest.mark.parametrize(
    "split,why",
    [
        ({"strategy": "random", "audit": {}}, "a random pixel split (split.strategy: random)"),
        # audited and reported, but never buffered: the reason must not claim that nothing was checked
        (
            {"strategy": "predefined", "audit": {}},
            "a user-supplied split with no buffer enforced (split.strategy: predefined)",
        ),
        (
            {"strategy": "blocks", "audit": {"test_patches_touching_train_pixels": 476}},
            "the leakage audit counts 476 test patches touching train pixels",
        ),
    ],
)
def test_leakage(split, why):
    ev = assess_evidence(_summary([20, 20], [6, 6]), split)
    assert ev["leakage"] and ev["conclusive"] and why in ev["leakage_reasons"][0]
    text = headline(ev, "Best model: svm (overall accuracy 1.000).")
    assert text.startswith("Accuracy inflated by spatial leakage: ")
    assert text.split(". ", 1)[1].startswith("Best model: svm (overall accuracy 1.000). Ranked on 2 assessable")


def test_the_basis_names_the_label_unit():
    # point labels: water on one point, forest on 6, urban on 5 (each point is its own block here)
    y = np.repeat([1, 2, 3], [20, 40, 30])
    units = np.concatenate([np.zeros(20), np.arange(40) % 6 + 1, np.arange(30) % 5 + 7]).astype(int)
    ev = assess_evidence(summarise_test_set(y, units, units, [1, 2, 3], NAMES3, noun="point"), BLOCKS)
    assert ev["not_assessable"] == {"water": "tested on 1 point only"}
    text = headline(ev, "Best model: svm.", "point")
    assert "Ranked on 2 assessable classes: 70 test pixels from 11 points in 11 blocks." in text
    assert "(tested on fewer than 2 points or blocks" in text and "polygon" not in text


def test_inconclusive_headline_names_no_model():
    ev = assess_evidence(_summary([2, 1], [1, 1]), BLOCKS)
    text = headline(ev, "Best model: svm (overall accuracy 1.000).")
    assert text.startswith("Evaluation inconclusive: only 3 test pixels") and "Best model" not in text


def test_cli_few_test_pixels_gives_an_inconclusive_report(tmp_path, capsys):
    from pipeline.cli.main import main

    cfg = points_scene(
        tmp_path / "scene",
        n_inside_per_class=7,
        models={"decision_tree": {}, "max_likelihood": {}},
        split={"random_contrast": False, "fractions": {"train": 0.8, "validation": 0.05, "test": 0.15}},
    )
    assert (
        main(
            ["run", str(cfg), "--out", str(tmp_path / "runs"), "--run-id", "few", "--no-progress", "--engine", "local"]
        )
        == 0
    )
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "few"
    m = json.loads((run / "metrics.json").read_text())
    ev = m["evidence"]
    n_test = ev["test_set"]["pixels"]
    # spatial k-fold by default: the test set is the pooled out-of-fold predictions, every fold's
    # test samples once (the folds' test sets are disjoint); 21 points are still too few to conclude
    tests = [f["test"] for f in json.loads((run / "folds.json").read_text())]
    assert len(tests) > 1 and len(set().union(*tests)) == sum(map(len, tests))
    assert n_test == sum(map(len, tests)) == len(pd.read_parquet(run / "eval" / "decision_tree.parquet")) < 30
    assert ev["conclusive"] is False and ev["reasons"][0] == f"only {n_test} test pixels (at least 30 are needed)"
    md = (run / "report.md").read_text()
    first = next(ln for ln in md.splitlines() if ln.startswith("**"))
    assert first.startswith("**Evaluation inconclusive: only") and "Best model" not in md
    assert "†" in md and "not reliable ranges" in md
    assert "Evaluation inconclusive (no best model): only" in out
    # too few test data: no no-skill test result is stated, and points are called points (#23.7)
    head = md.split("\n\n")[1]
    for text in (head, out):
        assert "significantly better than a no-skill" not in text and "No skill:" not in text
        assert "Whether the models beat a no-skill baseline cannot be told" in text or (
            "No comparison with a no-skill baseline could be made" in text
        )
        assert "polygon" not in text


def test_cli_random_split_headline_says_leakage(tmp_path, capsys):
    from pipeline.cli.main import main

    cfg = utm_scene(tmp_path / "scene", split={"strategy": "random", "random_contrast": False})
    assert (
        main(
            ["run", str(cfg), "--out", str(tmp_path / "runs"), "--run-id", "rnd", "--no-progress", "--engine", "local"]
        )
        == 0
    )
    m = json.loads((tmp_path / "runs" / "rnd" / "metrics.json").read_text())
    assert m["evidence"]["leakage"] is True
    md = (tmp_path / "runs" / "rnd" / "report.md").read_text()
    assert md.split("\n\n")[1].startswith("**Accuracy inflated by spatial leakage: a random pixel split")
    assert "Accuracy inflated by spatial leakage" in capsys.readouterr().out
