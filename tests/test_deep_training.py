"""How the deep models train: augmentation on by default, and the epoch kept chosen on a
validation set only when that set holds enough polygons (else the schedule runs to its end)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.models import build_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.deep import save_learning_curves
from pipeline.models.settings import CNNConfig, DeepConfig, ResNetConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _model(kind: str = "cnn", k: int = 5, seed: int = 0, **over):
    cfg = (CNNConfig if kind == "cnn" else ResNetConfig)(
        **{"channels": 8, "epochs": 3, "batch_size": 32, "dropout": 0.1, **over}
    )
    meta = ModelMeta(kind, ["b1", "b2", "b3"], [1, 2, 3], ["a", "b", "c"], ["#000000"] * 3, k, {})
    m = build_model(kind, cfg, meta, seed=seed, device="cpu")
    m.progress = False
    return m


def _data(n: int, k: int, seed: int, n_groups: int) -> TrainingData:
    """Class c has band c brighter; samples dealt round-robin into ``n_groups`` groups."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = (1000 + 40 * rng.normal(size=(n, 3, k, k))).astype(np.float32)
    for c in range(3):
        p[y == c, c] += 120
    return TrainingData(p, y + 1, np.arange(n) % n_groups, rng.uniform(0, 1000, (n, 2)), ["b1", "b2", "b3"])


# ------------------------------------------------------------------------------------------------
# Augmentation
# ------------------------------------------------------------------------------------------------
def test_augmentation_is_on_by_default_with_the_seeds_settings():
    d = DeepConfig()
    assert d.augment and d.flips and d.rotations
    assert d.amplitude_scale == (0.9, 1.1) and d.shift >= 1
    assert (
        _model().augmentation() == "amplitude x[0.9, 1.1], shift <= 1 px within the polygon, flips, 90-degree rotations"
    )


def _images(x: np.ndarray, group: str) -> list[np.ndarray]:
    """The transforms of one (bands, k, k) patch, written with numpy's own flips and rotations."""
    rot = [np.rot90(x, r, axes=(1, 2)) for r in range(4)]
    mirrors = [x, np.rot90(x, 2, axes=(1, 2)), x[:, :, ::-1], x[:, ::-1, :]]
    return {"all": rot + [np.swapaxes(r, 1, 2) for r in rot], "rotations": rot, "flips": mirrors, "none": [x]}[group]


@pytest.mark.parametrize(
    "over,group",
    [
        ({}, "all"),
        ({"flips": False}, "rotations"),
        ({"rotations": False}, "flips"),
        ({"flips": False, "rotations": False}, "none"),
        ({"augment": False}, "none"),
    ],
)
def test_flips_and_rotations_are_those_configured(over, group):
    m = _model(amplitude_scale=(1.0, 1.0), **over)
    m.norm_mean, m.norm_std = np.zeros(3, np.float32), np.ones(3, np.float32)
    x = torch.randn(400, 3, 5, 5)
    out = m._augment(x.clone(), torch.Generator().manual_seed(0), m._norm_tensors()).numpy()
    images = [_images(x[i].numpy(), group) for i in range(len(x))]
    seen = set()
    for i in range(len(x)):
        hits = [j for j, im in enumerate(images[i]) if np.array_equal(out[i], im)]
        assert hits, f"patch {i} is not one of the {group} transforms"
        seen.add(hits[0])
    assert seen == set(range(len(images[0])))  # every transform of the group is drawn


def test_augment_false_turns_amplitude_and_shift_off_too():
    m = _model(augment=False, amplitude_scale=(0.5, 2.0), shift=2)
    m.norm_mean, m.norm_std = np.zeros(3, np.float32), np.ones(3, np.float32)
    x = torch.randn(50, 3, 5, 5)
    assert torch.equal(m._augment(x.clone(), torch.Generator().manual_seed(0), m._norm_tensors()), x)
    train = _data(60, 5, 0, 6)
    y_idx = m._to_index(train.y, "training")
    assert m._sampler(train, y_idx, np.ones(3)).shift_tab is None
    assert m.augmentation() == "none"


# ------------------------------------------------------------------------------------------------
# Which epoch is kept
# ------------------------------------------------------------------------------------------------
def test_a_validation_set_of_few_polygons_does_not_choose_the_epoch():
    """With 4 validation polygons (< min_validation_groups) all epochs run and the last is kept:
    the same weights as a fit without any validation set."""
    train, few = _data(240, 5, 0, 24), _data(120, 5, 1, 4)
    a, b = _model(epochs=4, patience=1, lr=5e-2), _model(epochs=4, patience=1, lr=5e-2)
    a.fit(train, few)
    b.fit(train, None)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    info = a.fit_info
    assert info["selection"] == "schedule" and info["epochs_run"] == 4 and info["best_epoch"] == 4
    assert info["validation_groups"] == 4 and "4 groups" in info["epoch_selection"]
    assert "min_validation_groups = 20" in info["epoch_selection"]
    assert all(h["val_macro_f1"] is not None for h in a.history)  # still scored, for the curves
    assert [h["kept"] for h in a.history] == [False, False, False, True]


def test_enough_validation_polygons_choose_the_best_epoch():
    train, val = _data(240, 5, 0, 24), _data(200, 5, 1, 40)
    m = _model(epochs=6, patience=2, lr=5e-2, min_validation_groups=30)
    m.fit(train, val)
    f1 = [h["val_macro_f1"] for h in m.history]
    best = int(np.argmax(f1)) + 1
    assert m.fit_info["selection"] == "validation" and m.fit_info["best_epoch"] == best
    assert m.fit_info["best_val_macro_f1"] == m.fit_info["kept_val_macro_f1"] == f1[best - 1]
    assert [h["epoch"] for h in m.history if h["kept"]] == [best]


@pytest.mark.parametrize("selection,expected", [("validation", "validation"), ("schedule", "schedule")])
def test_selection_can_be_forced(selection, expected):
    train, val = _data(120, 5, 0, 12), _data(60, 5, 1, 3 if selection == "validation" else 60)
    m = _model(epochs=2, selection=selection)
    m.fit(train, val)
    assert m.fit_info["selection"] == expected
    assert f"selection: {selection}" in m.fit_info["epoch_selection"]


def test_fit_info_says_what_the_model_saw_and_how_it_was_trained():
    m = _model("resnet", 7, epochs=2)
    m.fit(_data(100, 7, 0, 10), None)
    info = m.fit_info
    assert info["patch_size"] == 7
    assert info["network"] == "3 3x3 conv layers, 8 channels, 2 residual blocks (1 3x3, 1 pointwise)"
    assert info["augmentation"].startswith("amplitude") and info["selection"] == "schedule"
    assert info["epochs_run"] == 2 and info["fit_seconds"] > 0
    assert json.loads(json.dumps(info)) == info  # stored as is in models/<m>.json and metrics.json


def test_learning_curves_mark_the_kept_epoch(tmp_path):
    m = _model(epochs=3)
    m.fit(_data(90, 5, 0, 9), _data(30, 5, 1, 3))
    save_learning_curves(m.history, tmp_path / "c.json", tmp_path / "c.png", note=m.fit_info["epoch_selection"])
    rows = json.loads((tmp_path / "c.json").read_text())
    assert [r["kept"] for r in rows] == [False, False, True]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
