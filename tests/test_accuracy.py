"""Tests of pipeline.evaluation (metrics, area_estimates, accuracy) against hand arithmetic, scipy and Olofsson et al. (2014)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.core.errors import InputError
from pipeline.evaluation.accuracy import assess_model
from pipeline.evaluation.area_estimates import area_adjusted, area_adjusted_from_labels, class_area_table
from pipeline.evaluation.metrics import bootstrap_ci, classification_metrics

# ----------------------------------------------------------------------------- metrics

# 10 pixels, 3 classes (ids 1, 2, 3) plus an id 9 that never occurs
Y_TRUE = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
Y_PRED = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 1])


def test_classification_metrics_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, [1, 2, 3, 9], ["a", "b", "c", "z"])
    # confusion (rows ref, cols pred): a: 3 1 0 ; b: 0 2 1 ; c: 1 0 2
    assert m["confusion_matrix"]["labels"] == ["a", "b", "c", "z"]
    assert m["confusion_matrix"]["matrix"] == [[3, 1, 0, 0], [0, 2, 1, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert m["overall_accuracy"] == pytest.approx(7 / 10)
    # kappa: po = .7, pe = (4*4 + 3*3 + 3*3) / 100 = .34
    assert m["kappa"] == pytest.approx((0.7 - 0.34) / (1 - 0.34))
    pc = m["per_class"]
    assert pc["a"]["precision"] == pytest.approx(3 / 4) and pc["a"]["recall"] == pytest.approx(3 / 4)
    assert pc["b"]["precision"] == pytest.approx(2 / 3) and pc["b"]["recall"] == pytest.approx(2 / 3)
    assert pc["c"]["precision"] == pytest.approx(2 / 3) and pc["c"]["recall"] == pytest.approx(2 / 3)
    assert pc["z"] == {"precision": None, "recall": None, "f1": None, "support": 0}  # undefined, not 0
    assert [pc[k]["support"] for k in "abc"] == [4, 3, 3]
    # macro-F1 over the classes that occur: (0.75 + 2/3 + 2/3) / 3
    assert m["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    norm = m["confusion_matrix_normalized"]["matrix"]
    assert norm[0] == pytest.approx([0.75, 0.25, 0, 0]) and norm[3] == [None] * 4
    assert set(m) == {
        "overall_accuracy",
        "kappa",
        "macro_f1",
        "per_class",
        "confusion_matrix",
        "confusion_matrix_normalized",
    }
    json.dumps(m)


def test_precision_of_a_class_never_predicted_is_none_and_its_recall_zero():
    # b: 2 reference pixels never predicted; c: predicted once, no reference pixels
    m = classification_metrics([1, 1, 2, 2], [1, 3, 1, 1], [1, 2, 3], ["a", "b", "c"])
    pc = m["per_class"]
    assert pc["b"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 2}
    # no reference pixel: recall and F1 undefined (None), not 0, even though c was predicted
    assert pc["c"] == {"precision": 0.0, "recall": None, "f1": None, "support": 0}
    assert pc["a"]["precision"] == pytest.approx(1 / 3) and pc["a"]["recall"] == pytest.approx(1 / 2)
    json.dumps(m, allow_nan=False)


def test_kappa_undefined_is_none_not_nan():
    m = classification_metrics([1, 1, 1], [1, 1, 1], [1, 2], ["a", "b"])
    assert m["overall_accuracy"] == 1.0 and m["kappa"] is None
    json.dumps(m, allow_nan=False)


# ----------------------------------------------------------------------------- bootstrap
def _blocky(n_blocks: int, per_block: int, seed: int):
    rng = np.random.default_rng(seed)
    blocks = np.repeat(np.arange(n_blocks), per_block)
    y = rng.integers(0, 4, blocks.size)
    # accuracy varies between blocks, as it does in space
    p_ok = rng.uniform(0.5, 0.95, n_blocks)[blocks]
    pred = np.where(rng.random(blocks.size) < p_ok, y, rng.integers(0, 4, blocks.size))
    return y, pred, blocks


def test_bootstrap_contains_estimate_and_shrinks_with_blocks():
    widths = []
    for n_blocks in (10, 160):
        y, p, b = _blocky(n_blocks, 50, seed=n_blocks)
        ci = bootstrap_ci(y, p, b, [0, 1, 2, 3], n_boot=500, seed=1)
        point = classification_metrics(y, p, [0, 1, 2, 3], list("abcd"))
        for k in ("overall_accuracy", "kappa", "macro_f1"):
            lo, hi = ci[k]
            assert lo <= point[k] <= hi, (k, lo, point[k], hi)
        assert ci["n_blocks"] == n_blocks and ci["n_boot"] == 500
        widths.append(ci["overall_accuracy"][1] - ci["overall_accuracy"][0])
    assert widths[1] < widths[0] / 2


def test_bootstrap_resamples_blocks_not_pixels():
    # two blocks: one all right, one all wrong. A block bootstrap can only
    # produce OA in {0, .5, 1}; a pixel bootstrap would hover near .5.
    y = np.zeros(200, int)
    p = np.r_[np.zeros(100, int), np.ones(100, int)]
    b = np.r_[np.zeros(100, int), np.ones(100, int)]
    ci = bootstrap_ci(y, p, b, [0, 1], n_boot=400, seed=0)
    assert ci["overall_accuracy"] == [0.0, 1.0]


def test_bootstrap_is_reproducible():
    y, p, b = _blocky(400, 500, seed=3)  # 200,000 pixels
    a = bootstrap_ci(y, p, b, [0, 1, 2, 3], n_boot=1000, seed=7)
    assert a == bootstrap_ci(y, p, b, [0, 1, 2, 3], n_boot=1000, seed=7)
    assert a != bootstrap_ci(y, p, b, [0, 1, 2, 3], n_boot=1000, seed=8)  # the seed is what fixes it


def test_bootstrap_chunks_match_a_pixel_loop_on_the_same_draws():
    # One block per pixel (what a random split gives) is the case that used to hold a
    # (resamples x blocks) matrix at once; the result must not depend on the chunking and must
    # equal resampling the pixels of the drawn blocks one resample at a time, same seed.
    y, p, b = _blocky(60, 1, seed=5)
    y2, p2, b2 = _blocky(12, 7, seed=6)
    for yy, pp, bb in ((y, p, b), (y2, p2, b2)):
        ids = np.unique(bb)
        draws = np.random.default_rng(11).integers(0, ids.size, size=(50, ids.size))
        oa = []
        for row in draws:
            take = np.concatenate([np.flatnonzero(bb == ids[k]) for k in row])
            oa.append(np.mean(yy[take] == pp[take]))
        want = [float(np.percentile(oa, 2.5)), float(np.percentile(oa, 97.5))]
        runs = [
            bootstrap_ci(yy, pp, bb, [0, 1, 2, 3], n_boot=50, seed=11, chunk_cells=c)
            for c in (1, 3 * ids.size + 1, 10**9)
        ]
        assert runs[0] == runs[1] == runs[2]
        assert runs[0]["overall_accuracy"] == pytest.approx(want, abs=1e-12)


# ----------------------------------------------------------------------------- Olofsson
# Olofsson et al. (2014), RSE 148:42-57, Section 5 / Table 8: sample counts, rows = MAP
# class, columns = REFERENCE class; map areas in 30 m pixels (0.09 ha each).
OLOF_NAMES = ["deforestation", "forest_gain", "stable_forest", "stable_nonforest"]
OLOF_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
OLOF_PIXELS = np.array([200_000, 150_000, 3_200_000, 6_450_000])
OLOF_AREA_HA = OLOF_PIXELS * 0.09


def _olofsson_by_loops(n, area):
    """The paper's equations written out term by term, independently of the library."""
    q = len(area)
    a_tot = sum(area)
    w = [a / a_tot for a in area]
    ni = [sum(row) for row in n]
    p = [[w[i] * n[i][j] / ni[i] for j in range(q)] for i in range(q)]
    out = {"oa": sum(p[k][k] for k in range(q))}
    out["oa_se"] = math.sqrt(sum(w[i] ** 2 * (n[i][i] / ni[i]) * (1 - n[i][i] / ni[i]) / (ni[i] - 1) for i in range(q)))
    for j in range(q):
        pj = sum(p[i][j] for i in range(q))
        se_pj = math.sqrt(sum((w[i] * p[i][j] - p[i][j] ** 2) / (ni[i] - 1) for i in range(q)))
        ua = n[j][j] / ni[j]
        pa = p[j][j] / pj
        nj_hat = sum(area[i] / ni[i] * n[i][j] for i in range(q))
        v = area[j] ** 2 * (1 - pa) ** 2 * ua * (1 - ua) / (ni[j] - 1)
        v += pa**2 * sum(
            area[i] ** 2 * n[i][j] / ni[i] * (1 - n[i][j] / ni[i]) / (ni[i] - 1) for i in range(q) if i != j
        )
        out[j] = {
            "area": pj * a_tot,
            "area_ci": 1.96 * se_pj * a_tot,
            "ua": ua,
            "ua_ci": 1.96 * math.sqrt(ua * (1 - ua) / (ni[j] - 1)),
            "pa": pa,
            "pa_ci": 1.96 * math.sqrt(v / nj_hat**2),
        }
    return out


def test_olofsson_2014_worked_example_published_values():
    r = area_adjusted(OLOF_COUNTS, OLOF_AREA_HA, OLOF_NAMES)
    c = r["classes"]
    # values as the paper prints them (areas in ha to the unit, accuracies to 2 decimals)
    published = {
        # name: (area, ±area, UA, ±UA, PA, ±PA)
        "deforestation": (21_158, 6_158, 0.88, 0.07, 0.75, 0.21),
        "forest_gain": (11_686, 3_756, 0.73, 0.10, 0.85, 0.25),
        "stable_forest": (285_770, 15_510, 0.93, 0.04, 0.93, 0.03),
        "stable_nonforest": (581_386, 16_282, 0.96, 0.02, 0.96, 0.02),
    }
    for name, (a, a_ci, ua, ua_ci, pa, pa_ci) in published.items():
        assert round(c[name]["area_ha"]) == a, name
        assert round(c[name]["area_ci95_ha"]) == a_ci, name
        assert round(c[name]["users_accuracy"], 2) == ua, name
        assert round(c[name]["users_accuracy_ci95"], 2) == ua_ci, name
        assert round(c[name]["producers_accuracy"], 2) == pa, name
        assert round(c[name]["producers_accuracy_ci95"], 2) == pa_ci, name
    assert round(r["overall_accuracy"], 2) == 0.95
    assert round(r["overall_accuracy_ci95"], 2) == 0.02
    # mapped areas: 18,000 / 13,500 / 288,000 / 580,500 ha
    assert [c[k]["mapped_area_ha"] for k in OLOF_NAMES] == pytest.approx([18_000, 13_500, 288_000, 580_500])
    assert r["notes"] == []


def test_olofsson_matches_independent_loop_implementation():
    r = area_adjusted(OLOF_COUNTS, OLOF_AREA_HA, OLOF_NAMES)
    ref = _olofsson_by_loops(OLOF_COUNTS.tolist(), OLOF_AREA_HA.tolist())
    assert r["overall_accuracy"] == pytest.approx(ref["oa"], rel=1e-12)
    assert r["overall_accuracy_se"] == pytest.approx(ref["oa_se"], rel=1e-12)
    for j, name in enumerate(OLOF_NAMES):
        c = r["classes"][name]
        assert c["area_ha"] == pytest.approx(ref[j]["area"], rel=1e-12)
        assert c["area_ci95_ha"] == pytest.approx(ref[j]["area_ci"], rel=1e-12)
        assert c["users_accuracy_ci95"] == pytest.approx(ref[j]["ua_ci"], rel=1e-12)
        assert c["producers_accuracy"] == pytest.approx(ref[j]["pa"], rel=1e-12)
        assert c["producers_accuracy_ci95"] == pytest.approx(ref[j]["pa_ci"], rel=1e-12)
    # estimated areas add up to the mapped total
    assert sum(c["area_ha"] for c in r["classes"].values()) == pytest.approx(900_000)


def test_olofsson_from_labels_equals_counts():
    ids = [10, 20, 30, 40]
    y_map = np.repeat(np.repeat(ids, 4), OLOF_COUNTS.ravel())
    y_ref = np.repeat(np.tile(ids, 4), OLOF_COUNTS.ravel())
    r = area_adjusted_from_labels(y_ref, y_map, dict(zip(ids, OLOF_PIXELS.tolist())), 0.09, ids, OLOF_NAMES)
    direct = area_adjusted(OLOF_COUNTS, OLOF_AREA_HA, OLOF_NAMES)
    assert r["overall_accuracy"] == pytest.approx(direct["overall_accuracy"])
    assert r["classes"]["deforestation"]["area_ha"] == pytest.approx(direct["classes"]["deforestation"]["area_ha"])


def test_area_adjusted_unsampled_and_single_strata():
    counts = np.array([[10, 2, 0], [0, 0, 0], [0, 1, 0]])  # class b unsampled, class c one sample
    r = area_adjusted(counts, np.array([100.0, 50.0, 10.0]), ["a", "b", "c"])
    json.dumps(r, allow_nan=False)
    assert r["classes"]["b"]["users_accuracy"] is None
    assert r["classes"]["c"]["users_accuracy"] == 0.0
    assert r["classes"]["c"]["producers_accuracy"] is None  # nothing is reference c
    assert any("'b'" in s and "no sample" in s for s in r["notes"])
    assert any("'c'" in s and "single sample" in s for s in r["notes"])
    with pytest.raises(InputError):
        area_adjusted(np.zeros((2, 3)), np.ones(2), ["a", "b"])


# ----------------------------------------------------------------------------- areas
def _write_map(path, data, crs="EPSG:32633", res=10.0, nodata=255):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=from_origin(500_000, 5_000_000, res, res),
        nodata=nodata,
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        dst.write(data, 1)


def _band_area_m2(lat0: float, lat1: float, dlon_deg: float) -> float:
    """Area of the band lat0..lat1 over dlon_deg of longitude on the WGS84 ellipsoid (closed form)."""
    a, f = 6378137.0, 1 / 298.257223563
    e = np.sqrt(f * (2 - f))
    b2 = (a * (1 - f)) ** 2

    def q(lat):
        s = np.sin(np.radians(lat))
        return s / (1 - e * e * s * s) + np.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return np.pi * b2 * (q(lat1) - q(lat0)) * dlon_deg / 360.0


def test_class_area_table(tmp_path):
    data = np.full((40, 48), 1, np.uint8)
    data[:10] = 2
    data[-1] = 255
    path = tmp_path / "m.tif"
    _write_map(path, data)
    t = class_area_table(path, [1, 2, 3], ["a", "b", "c"])
    assert t["b"] == {"pixels": 480, "area_ha": pytest.approx(4.8), "fraction": pytest.approx(480 / 1872)}
    assert t["a"]["pixels"] == 40 * 48 - 480 - 48
    assert t["c"]["pixels"] == 0
    # a geographic map: true ground areas (rows of 0.01 degree at 45-45.1 N), checked against the
    # closed-form area of a latitude band on the WGS84 ellipsoid
    geo = tmp_path / "g.tif"
    with rasterio.open(
        geo,
        "w",
        driver="GTiff",
        width=48,
        height=40,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_origin(10.0, 45.4, 0.01, 0.01),
        nodata=255,
    ) as dst:
        dst.write(data, 1)
    g = class_area_table(geo, [1, 2], ["a", "b"])
    want_b = _band_area_m2(45.3, 45.4, 48 * 0.01) / 1e4
    assert g["b"]["pixels"] == 480 and g["b"]["area_ha"] == pytest.approx(want_b, rel=1e-6)
    assert g["a"]["area_ha"] == pytest.approx(_band_area_m2(45.01, 45.3, 48 * 0.01) / 1e4, rel=1e-6)
    eng = tmp_path / "e.tif"
    with rasterio.open(
        eng,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        crs='LOCAL_CS["arbitrary",UNIT["metre",1]]',
        transform=from_origin(100, 100, 1, 1),
    ) as dst:
        dst.write(np.ones((4, 4), np.uint8), 1)
    with pytest.raises(InputError, match="neither projected nor geographic"):
        class_area_table(eng, [1], ["a"])
    with pytest.raises(InputError, match="not found"):
        class_area_table(tmp_path / "missing.tif", [1], ["a"])


def test_assess_model_shape(tmp_path):
    data = np.full((32, 32), 1, np.uint8)
    data[:, :8] = 2
    path = tmp_path / "m.tif"
    _write_map(path, data)
    y, p, b = _blocky(12, 20, seed=5)
    out = assess_model(y + 1, p + 1, b, [1, 2, 3, 4], list("abcd"), map_path=path, n_boot=200)
    assert {"ci95", "class_areas", "area_adjusted", "per_class"} <= set(out)
    assert out["area_adjusted"]["classes"]["c"]["mapped_area_ha"] == 0.0
    json.dumps(out, allow_nan=False)


def test_confidence_summary_by_hand():
    from pipeline.evaluation.metrics import confidence_summary

    s = confidence_summary(np.array([0.9, 0.8, 0.6, 0.7, np.nan]), np.array([True, True, False, False, True]))
    assert s["levels"] == 4 and not s["degenerate"]
    assert s["mean_correct"] == pytest.approx(0.85) and s["mean_wrong"] == pytest.approx(0.65)
    assert s["auc"] == 1.0  # every right pixel is more confident than every wrong one
    flat = confidence_summary(np.ones(6), np.array([True, False] * 3))
    assert flat["degenerate"] and flat["levels"] == 1 and flat["auc"] == 0.5
    assert confidence_summary(np.ones(3), np.ones(3, bool))["auc"] is None
