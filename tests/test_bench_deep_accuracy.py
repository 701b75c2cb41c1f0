"""The before/after accuracy benchmark of the deep models runs end to end on a tiny project."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_project import make_project

from bench.deep_accuracy import main, run_bench, scores

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_scores_pool_pixels_and_average_groups():
    y = np.array([1, 1, 1, 2, 2, 3])
    pred = np.array([1, 2, 1, 2, 2, 1])
    groups = np.array([7, 7, 7, 8, 8, 9])
    s = scores(y, pred, groups)
    assert s["overall_accuracy"] == pytest.approx(4 / 6)
    assert s["group_accuracy"] == pytest.approx(np.mean([2 / 3, 1.0, 0.0]))  # groups 7, 8, 9
    # macro-F1 by hand: class 1 P=2/3 R=2/3, class 2 P=2/3 R=1, class 3 P=0 R=0
    f1 = [2 / 3, 2 * (2 / 3) / (2 / 3 + 1), 0.0]
    assert s["macro_f1"] == pytest.approx(np.mean(f1))


@pytest.mark.e2e
def test_before_and_after_on_a_tiny_project(tmp_path):
    deep = {"epochs": 2, "channels": 8, "batch_size": 64}
    cfg = make_project(tmp_path / "p", models={"cnn": deep, "resnet": deep}, patch={"size": 3})
    out = tmp_path / "bench" / "deep_accuracy.json"
    rep = run_bench(
        out, scenes=["tiny", "absent"], seeds=[3], configs={"tiny": cfg, "absent": tmp_path / "no.yaml"}, log=None
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(rep))
    assert set(saved["scenes"]) == {"tiny"} and "absent" in saved["skipped"]
    scene = saved["scenes"]["tiny"]
    n_test = scene["split"]["test_pixels"]
    assert n_test > 0 and scene["patch_size"] == 3
    for kind in ("cnn", "resnet"):
        res = scene["models"][kind]
        for variant in ("before", "after"):
            (r,) = res[variant]
            assert 0 <= r["overall_accuracy"] <= 1 and 0 <= r["group_accuracy"] <= 1
            assert len(r["fits"]) == scene["split"]["folds"]
            assert res[f"{variant}_mean"]["overall_accuracy"] == r["overall_accuracy"]
        # before: early stopping on validation, no shift; after: the defaults (2 epochs, all run)
        assert {f["selection"] for f in res["before"][0]["fits"]} == {"validation"}
        assert "shift" not in res["before"][0]["augmentation"] and "shift" in res["after"][0]["augmentation"]
        (p,) = res["paired"]
        assert p["groups_better"] + p["groups_worse"] <= scene["split"]["test_groups"]
    # the 0.1.x ResNet at patch size 3 had no residual block; now it has two pointwise ones
    assert "residual" not in scene["models"]["resnet"]["before"][0]["network"]
    assert "2 residual blocks (0 3x3, 2 pointwise)" in scene["models"]["resnet"]["after"][0]["network"]


def test_unknown_scene_is_one_line(capsys):
    from pipeline.core.errors import InputError

    with pytest.raises(InputError, match="unknown scene 'nowhere'"):
        main(["--scenes", "nowhere"])
