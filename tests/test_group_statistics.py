"""Group-level statistics on synthetic test sets with known answers (issue #26 points 3-6).

N polygons per class, each with a designed accuracy, so the overall accuracy is known exactly.
Every interval and p-value of the pipeline (a bootstrap over polygons) is checked against one
computed here by other means: the linearised (cluster-robust) standard error of a ratio
estimator, Durkalski et al.'s (2003) clustered McNemar test, Holm's adjustment by hand, and a
resample-by-resample loop over :func:`area_adjusted` for the area intervals.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from pipeline.evaluation.area_estimates import area_adjusted, unit_intervals
from pipeline.evaluation.baselines import no_skill_predictions
from pipeline.evaluation.comparison import compare_classifiers
from pipeline.evaluation.metrics import bootstrap_ci, classification_metrics
from pipeline.evaluation.resampling import holm

IDS = [1, 2, 3]
NAMES = ["water", "forest", "urban"]
N_POLY = 12  # polygons per class
PX = 40  # test pixels per polygon
#: Designed accuracy of model A on the polygons of each class, cycled: mean exactly 0.8.
ACC = (0.6, 0.8, 1.0)


def designed_scene(d_pattern: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Reference, polygon id and the predictions of models A and B.

    A gets ``ACC[g % 3] * PX`` pixels of polygon g right (its errors go to the next class). B is A
    with ``d = d_pattern[g % len(d_pattern)]`` changes per polygon: for d > 0, d of A's right
    pixels wrong; for d < 0, |d| of A's wrong pixels right. So per polygon, (A right and B
    wrong) - (A wrong and B right) = d, the quantity of Durkalski's test.
    """
    y, g, a, b = [], [], [], []
    for k in range(3 * N_POLY):
        cls = IDS[k // N_POLY]
        wrong = IDS[(k // N_POLY + 1) % 3]
        n_ok = round(ACC[k % 3] * PX)
        ok_a = np.arange(PX) < n_ok
        ok_b = ok_a.copy()
        d = d_pattern[k % len(d_pattern)]
        if d > 0:
            ok_b[:d] = False
        elif d < 0:
            ok_b[n_ok : n_ok - d] = True
        y.append(np.full(PX, cls))
        g.append(np.full(PX, k))
        a.append(np.where(ok_a, cls, wrong))
        b.append(np.where(ok_b, cls, wrong))
    return tuple(np.concatenate(v) for v in (y, g, a, b))


def linearised_interval(values: np.ndarray, units: np.ndarray) -> tuple[float, float]:
    """95% interval of a mean over pixels when pixels come in clusters: the ratio estimator's
    linearised (cluster-robust) variance, sum over clusters of (total - mean * size)^2,
    with the G / (G - 1) small-sample factor."""
    m = np.bincount(units).astype(float)
    mean = values.mean()
    s = np.bincount(units, weights=values.astype(float)) - mean * m
    g = m.size
    se = np.sqrt(g / (g - 1) * (s**2).sum()) / values.size
    return mean - 1.96 * se, mean + 1.96 * se


def durkalski_p(ok_a: np.ndarray, ok_b: np.ndarray, units: np.ndarray) -> float:
    """Clustered McNemar test (Durkalski et al. 2003): X^2 = (sum_k (b_k - c_k))^2 / sum_k (b_k - c_k)^2."""
    d = np.bincount(units, weights=(ok_a & ~ok_b).astype(float)) - np.bincount(
        units, weights=(~ok_a & ok_b).astype(float)
    )
    x2 = d.sum() ** 2 / (d**2).sum()
    return float(stats.chi2.sf(x2, 1))


def test_group_interval_matches_the_cluster_robust_interval():
    y, g, a, _ = designed_scene((0,))
    assert classification_metrics(y, a, IDS, NAMES)["overall_accuracy"] == pytest.approx(0.8)  # as designed
    ci = bootstrap_ci(y, a, g, IDS, n_boot=2000, seed=0)
    lo, hi = linearised_interval(a == y, g)
    assert ci["n_blocks"] == 3 * N_POLY
    assert ci["overall_accuracy"] == pytest.approx([lo, hi], abs=0.01)
    # the pixel-level (binomial) interval, which pretends 1,440 pixels are independent, is far narrower
    pixel_half = 1.96 * np.sqrt(0.8 * 0.2 / y.size)
    assert hi - lo > 2 * 2 * pixel_half
    # the ranking figures of compare_classifiers come from the same draws: the same interval
    r = compare_classifiers(y, {"a": a}, g, IDS, NAMES, IDS, n_boot=2000, seed=0)
    assert r["ranking"]["a"]["ci95"]["overall_accuracy"] == ci["overall_accuracy"]
    assert r["ranking"]["a"]["units"] == 3 * N_POLY and r["ranking"]["a"]["test_pixels"] == y.size


@pytest.mark.parametrize(
    "pattern,expect",
    [
        ((-3, 0, 3), "null"),  # B as good as A: differences cancel within each class
        ((2, -1, 0, 3, -2, 1), "moderate"),  # A slightly better, noisily
        ((2, 3, 4), "strong"),  # A better on every polygon
    ],
)
def test_paired_p_value_matches_the_clustered_mcnemar_test(pattern, expect):
    y, g, a, b = designed_scene(pattern)
    r = compare_classifiers(y, {"a": a, "b": b}, g, IDS, NAMES, IDS, n_boot=2000, seed=0)
    d = r["pairwise"][0]
    oa = d["overall_accuracy"]
    designed = np.mean([pattern[k % len(pattern)] for k in range(3 * N_POLY)]) / PX
    assert oa["difference"] == pytest.approx(designed)
    p_ref = durkalski_p(a == y, b == y, g)
    lo, hi = linearised_interval((a == y).astype(float) - (b == y), g)
    assert oa["ci95"] == pytest.approx([lo, hi], abs=0.01)
    if expect == "null":
        assert p_ref > 0.5 and oa["p_value"] > 0.5 and not d["significant"]
    elif expect == "moderate":
        assert 0.005 < p_ref < 0.5 and oa["p_value"] == pytest.approx(p_ref, abs=0.05)
    else:
        assert p_ref < 1e-4 and oa["p_value"] < 0.002 and d["significant"]
    # one pair: Holm changes nothing
    assert d["p_value"] == oa["p_holm"] == oa["p_value"] == d["p_value_raw"]


def test_holm_by_hand_and_across_pairs():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> 0.06 (running maximum)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.9]) == [1.0, None, 1.0]  # 0.5 x 2; 0.9 x 1, raised to keep the order
    y, g, a, b = designed_scene((2, -1, 0, 3, -2, 1))
    c = np.where(np.arange(y.size) % 7 == 0, IDS[0], a)  # a third model
    r = compare_classifiers(y, {"a": a, "b": b, "c": c}, g, IDS, NAMES, IDS, n_boot=1000, seed=3)
    assert [(d["a"], d["b"]) for d in r["pairwise"]] == [("a", "b"), ("a", "c"), ("b", "c")]
    for score in ("overall_accuracy", "macro_f1"):
        raw = [d[score]["p_value"] for d in r["pairwise"]]
        assert [d[score]["p_holm"] for d in r["pairwise"]] == pytest.approx(holm(raw))
    assert all(d["p_value"] == d["overall_accuracy"]["p_holm"] for d in r["pairwise"])


def test_a_class_on_one_polygon_is_left_out_of_the_ranking():
    y, g, a, _ = designed_scene((0,))
    # a fourth class, "bare", tested on one polygon of 30 pixels, half of them mapped right
    y = np.r_[y, np.full(30, 4)]
    g = np.r_[g, np.full(30, 999)]
    a = np.r_[a, np.where(np.arange(30) < 15, 4, 1)]
    a[:5] = 4  # and five water pixels mapped as bare: errors, whatever happens to bare
    ids, names = [*IDS, 4], [*NAMES, "bare"]
    r = compare_classifiers(y, {"a": a}, g, ids, names, IDS, n_boot=500, seed=0)["ranking"]["a"]
    keep = y != 4
    assert r["classes"] == NAMES and r["test_pixels"] == keep.sum() and r["units"] == 3 * N_POLY
    assert r["overall_accuracy"] == pytest.approx(np.mean(a[keep] == y[keep]))
    assert r["macro_f1"] == pytest.approx(f1_score(y[keep], a[keep], labels=IDS, average="macro"))


def test_macro_f1_averages_the_classes_with_test_support():
    # urban (3) is predicted but has no test pixel: it adds no term (it used to add an F1 of 0)
    y = np.array([1, 1, 1, 2, 2, 2, 2, 1])
    p = np.array([1, 1, 3, 2, 2, 1, 2, 1])
    m = classification_metrics(y, p, IDS, NAMES)
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, labels=[1, 2], average="macro"))
    assert m["per_class"]["urban"]["f1"] is None and m["per_class"]["urban"]["precision"] == 0.0


def test_no_skill_baselines_are_fitted_on_each_folds_training_pixels():
    y = np.array([1] * 50 + [2] * 30 + [3] * 20)
    train_sets = [np.arange(0, 60), np.arange(40, 100)]  # fold 0: majority 1; fold 1: 10 x 1, 30 x 2, 20 x 3
    fold = np.array([0] * 30 + [1] * 70)
    preds, majority = no_skill_predictions(y, train_sets, fold, seed=4)
    assert majority == [1, 2] == [int(np.argmax(np.bincount(y[t]))) for t in train_sets]
    assert (preds["majority"][fold == 0] == 1).all() and (preds["majority"][fold == 1] == 2).all()
    strat = preds["stratified"][fold == 1]
    assert set(strat) <= {1, 2, 3} and (strat == 2).mean() == pytest.approx(0.5, abs=0.2)
    again, _ = no_skill_predictions(y, train_sets, fold, seed=4)
    assert (again["stratified"] == preds["stratified"]).all()  # seeded


def test_a_model_below_the_constant_map_does_not_beat_it():
    # 78% of the test pixels are forest; the model gets 76% right: a constant map scores more
    y = np.where(np.arange(1000) % 100 < 78, 2, 1)
    units = np.arange(1000) // 25
    p = y.copy()
    p[np.arange(1000) % 50 < 12] = 3  # 24% wrong, spread over every unit
    base = {"majority": np.full(1000, 2)}
    vs = compare_classifiers(y, {"m": p}, units, IDS, NAMES, IDS, base, n_boot=500, seed=0)["vs_baselines"]["m"]
    assert vs["majority"]["difference"] == pytest.approx(0.76 - 0.78)
    assert vs["majority"]["beats"] is False and vs["majority"]["significantly_better"] is False


def test_area_intervals_resample_blocks_as_a_loop_over_area_adjusted_does():
    y, g, a, _ = designed_scene((0,))
    mapped = np.array([3000.0, 5000.0, 2000.0])
    n_boot, seed = 60, 5
    got = unit_intervals(y, a, g, mapped, IDS, NAMES, n_boot=n_boot, seed=seed)
    # the same draws, resample by resample, through the scalar Olofsson estimator
    draws = np.random.default_rng(seed).integers(0, 3 * N_POLY, size=(n_boot, 3 * N_POLY))
    oa, area_w = [], []
    for row in draws:
        take = np.concatenate([np.flatnonzero(g == k) for k in row])
        counts = np.zeros((3, 3))
        np.add.at(counts, (a[take] - 1, y[take] - 1), 1)  # rows map, columns reference
        est = area_adjusted(counts, mapped, NAMES)
        oa.append(est["overall_accuracy"])
        area_w.append(est["classes"]["water"]["area_ha"])
    assert got["overall_accuracy"] == pytest.approx([np.percentile(oa, 2.5), np.percentile(oa, 97.5)])
    assert got["classes"]["water"]["area_ha"] == pytest.approx(
        [np.percentile(area_w, 2.5), np.percentile(area_w, 97.5)]
    )
    assert got["n_units"] == 3 * N_POLY and got["unit"] == "block"


def test_an_untested_class_area_is_not_estimable_not_zero():
    # the map shows 2,062 ha of sediment but no test pixel is sediment: no estimate, not 0 +- 0
    counts = np.array([[40, 5, 0], [3, 50, 0], [2, 4, 0]])  # rows map, columns reference
    est = area_adjusted(counts, np.array([5000.0, 8000.0, 2062.0]), ["water", "forest", "sediment"])
    sed = est["classes"]["sediment"]
    assert sed["area_ha"] is None and sed["area_ci95_ha"] is None and sed["producers_accuracy"] is None
    assert sed["users_accuracy"] == 0.0  # its stratum was sampled: all 6 pixels mapped as it are wrong
    assert any("'sediment'" in n and "not estimable" in n and "2,062.0 ha" in n for n in est["notes"])
