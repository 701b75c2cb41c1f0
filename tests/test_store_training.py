"""Models train from index lists over the memory-mapped patch store: same model as from copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.inputs.raster import RasterStack
from pipeline.models import build_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.settings import CNNConfig, DecisionTreeConfig, MaxLikelihoodConfig
from pipeline.sampling.patches import PatchStore, extract_patches, open_patches
from tests.conftest import write_raster

IDS = [1, 2, 3]
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def store_data(tmp_path_factory):
    """A 4-band int16 scene whose three classes differ in one band each; 600 labelled pixels."""
    tmp = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    cls = np.repeat(np.arange(3), 40)[None, :].repeat(40, 0)  # (40, 120): three vertical stripes
    data = (1000 + 60 * rng.normal(size=(4, 40, 120))).astype(np.int16)
    for c in range(3):
        data[c][cls == c] += 200
    data[:, :3, :3] = -9999
    path = write_raster(tmp / "s.tif", data, nodata=-9999)
    r, c = rng.integers(0, 40, 600), rng.integers(0, 120, 600)
    samples = pd.DataFrame({"row": r, "col": c})
    with RasterStack.open(path) as stack:
        extract_patches(stack, samples, 5, tmp / "p.npy", window_size=32, progress=False)
    store = open_patches(tmp / "p.npy")
    y = np.asarray(IDS)[cls[r, c]]
    xy = np.stack([c * 10.0, -r * 10.0], 1)
    names = [f"b{i}" for i in range(4)]
    lazy = TrainingData(store, y, np.arange(600), xy, names)
    eager = TrainingData(np.asarray(store), y, np.arange(600), xy, names)
    return lazy, eager


def _meta(name):
    return ModelMeta(name, [f"b{i}" for i in range(4)], IDS, ["a", "b", "c"], ["#000000"] * 3, 5)


@pytest.mark.parametrize(
    "name,settings",
    [
        ("decision_tree", DecisionTreeConfig()),
        ("max_likelihood", MaxLikelihoodConfig()),
        ("cnn", CNNConfig(channels=8, epochs=2, batch_size=32)),
    ],
)
def test_index_list_training_equals_copy_training(store_data, name, settings):
    lazy, eager = store_data
    train, val, test = np.arange(0, 400), np.arange(400, 480), np.arange(480, 600)
    sub = lazy.subset(train)
    assert isinstance(sub.patches, PatchStore) and sub.patches.raw is lazy.patches.raw  # an index list
    models = []
    for data in (lazy, eager):
        m = build_model(name, settings, _meta(name), seed=3, device="cpu")
        m.progress = False
        m.fit(data.subset(train), data.subset(val))
        models.append(m)
    a, b = models
    pa = a.predict_patches(lazy.subset(test).patches)
    pb = b.predict_patches(np.asarray(eager.patches[test]))
    np.testing.assert_array_equal(pa[0], pb[0])
    np.testing.assert_array_equal(pa[1], pb[1])
    assert np.mean(pa[0] == lazy.y[test]) > 0.5  # it learnt something (chance: 1/3)
    if name == "cnn":
        for (k, v), w in zip(a.net.state_dict().items(), b.net.state_dict().values()):
            assert torch.equal(v, w), k
        assert a.history == b.history or [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    else:
        X = a.features_from_patches(lazy.subset(test).patches)
        np.testing.assert_array_equal(X, b.features_from_patches(np.asarray(eager.patches[test])))


def test_features_are_read_in_bounded_chunks(store_data, monkeypatch):
    """Many chunks (tiny budget) give the same features as one pass."""
    import pipeline.sampling.patches as P

    lazy, _ = store_data
    m = build_model("decision_tree", DecisionTreeConfig(), _meta("decision_tree"), seed=0)
    one = m.features_from_patches(lazy.patches)
    seen = []
    orig = PatchStore._read

    def spy(self, rows):
        out = orig(self, rows)
        seen.append(len(out))
        return out

    monkeypatch.setattr(P, "CHUNK_BYTES", 7 * 4 * 25 * 4)
    monkeypatch.setattr(PatchStore, "_read", spy)
    many = m.features_from_patches(lazy.patches)
    np.testing.assert_array_equal(one, many)
    assert max(seen) <= 7 and len(seen) >= 600 // 7
