"""The ResNet is a residual network at every supported patch size, never the CNN under another name.

Architecture 1 (0.1.x) had no residual block at patch size 1 and 3, where the ResNet was the CNN
layer for layer: the same weights from the same seed, the same maps and confidence. Architecture 2
tops the 3x3 blocks up with pointwise (1x1) residual blocks, which keep the receptive field
(and so dense inference) exactly as it was. Files of architecture 1 still build architecture 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from conftest import run_cli
from numpy.lib.stride_tricks import sliding_window_view
from tiny_project import make_project

from pipeline.core.errors import InputError
from pipeline.models import build_model, load_model
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.deep import FORMAT, load_deep
from pipeline.models.nets import MIN_RESIDUAL_BLOCKS, CompactCNN, PatchResNet, ResidualBlock, randomize_batchnorm
from pipeline.models.settings import CNNConfig, ResNetConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SUPPORTED = range(1, 66, 2)  # patch.size: odd, 1 to 65 (pipeline.sampling.settings.PatchConfig)


def _meta(kind: str, k: int) -> ModelMeta:
    return ModelMeta(kind, ["b1", "b2", "b3"], [1, 2, 3], ["a", "b", "c"], ["#000000"] * 3, k, {})


def _model(kind: str, k: int, seed: int = 0, **over):
    cfg = (CNNConfig if kind == "cnn" else ResNetConfig)(channels=8, epochs=1, batch_size=32, **over)
    m = build_model(kind, cfg, _meta(kind, k), seed=seed, device="cpu")
    m.progress = False
    return m


@pytest.mark.parametrize("k", SUPPORTED)
def test_resnet_has_residual_blocks_and_differs_from_the_cnn(k):
    cnn, res = _model("cnn", k), _model("resnet", k)
    blocks = [b for b in res.net.blocks if isinstance(b, ResidualBlock)]
    assert len(blocks) >= MIN_RESIDUAL_BLOCKS
    assert set(res.net.state_dict()) != set(cnn.net.state_dict())
    # Same seed, same inputs: different functions (the 0.1.x ResNet at k = 3 gave the CNN's logits bit for bit).
    for m in (cnn, res):
        randomize_batchnorm(m.net, 1)
    x = np.random.default_rng(k).normal(1000, 50, size=(16, 3, k, k)).astype(np.float32)
    a, b = cnn.patch_logits(x), res.patch_logits(x)
    assert a.shape == b.shape == (16, 3)
    assert np.abs(a - b).max() > 1e-3
    # The receptive field is k in both: a patch collapses to one pixel, and nothing outside it counts.
    assert res.net.eval()(torch.zeros(1, 3, k, k)).shape == (1, 3, 1, 1)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_each_block_adds_its_skip(k):
    """A block's output is relu(skip + branch): with the branch's last BN scaled to 0 it is
    relu(skip) exactly, and with the skip it is not the branch alone."""
    net = PatchResNet(3, 3, k, channels=8).eval()
    randomize_batchnorm(net, 2)
    for block in net.blocks:
        x = torch.randn(2, 8, 2 * block.crop + 3, 2 * block.crop + 3)
        c = block.crop
        skip = x[:, :, c : x.shape[2] - c, c : x.shape[3] - c]
        with torch.no_grad():
            full = block(x)
            branch_only = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))))
            assert not torch.allclose(full, branch_only)
            block.bn2.weight.zero_()
            block.bn2.bias.zero_()
            torch.testing.assert_close(block(x), torch.relu(skip))


def _separable(n: int, k: int, seed: int) -> TrainingData:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = (1000 + 40 * rng.normal(size=(n, 3, k, k))).astype(np.float32)
    for c in range(3):
        p[y == c, c] += 150
    return TrainingData(p, y + 1, np.arange(n), rng.uniform(0, 1000, (n, 2)), ["b1", "b2", "b3"])


@pytest.mark.parametrize("k", [1, 3])
def test_trained_resnet_and_cnn_give_different_confidence(k):
    train, test = _separable(200, k, 0), _separable(100, k, 1)
    cnn, res = _model("cnn", k, seed=5), _model("resnet", k, seed=5)
    for m in (cnn, res):
        m.fit(train, None)
    (_, cc), (_, cr) = cnn.predict_patches(test.patches), res.predict_patches(test.patches)
    assert not np.array_equal(cc, cr)
    assert res.fit_info["network"] != cnn.fit_info["network"]
    assert "residual blocks" in res.fit_info["network"] and "residual" not in cnn.fit_info["network"]


def test_architecture_1_is_the_layout_of_0_1_and_still_builds():
    """The 0.1.x layout (no block below k = 5, one at k = 5 and 7) for the files saved then."""
    for k, n_blocks in ((1, 0), (3, 0), (5, 1), (7, 1), (9, 2), (13, 3)):
        assert len(PatchResNet(3, 3, k, channels=8, architecture=1).blocks) == n_blocks
    torch.manual_seed(0)
    cnn = CompactCNN(3, 3, 3, channels=8)
    torch.manual_seed(0)
    old = PatchResNet(3, 3, 3, channels=8, architecture=1)
    # ... which is why it had to change: at k = 3 it was the CNN, weight for weight.
    assert [v.shape for v in cnn.state_dict().values()] == [v.shape for v in old.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(cnn.state_dict().values(), old.state_dict().values()))


def test_saved_architecture_round_trips_and_newer_files_are_refused(tmp_path):
    m = _model("resnet", 3)
    m.fit(_separable(80, 3, 0), None)
    blob = m.to_dict()
    assert blob["format"] == FORMAT == "landcover-deep/2"
    path = m.save(tmp_path / "r.pt")
    again = load_deep(path)
    assert again.architecture == 2 and len(again.net.blocks) == 2
    x = _separable(20, 3, 1).patches
    np.testing.assert_array_equal(again.patch_logits(x), m.patch_logits(x))
    torch.save({**blob, "format": "landcover-deep/9"}, tmp_path / "new.pt")
    with pytest.raises(InputError, match="newer version"):
        load_model(tmp_path / "new.pt")


@pytest.mark.e2e
def test_a_run_at_patch_size_3_maps_two_different_deep_models(tmp_path):
    """End to end: `landcover run` with patch size 3 writes a CNN and a ResNet that differ
    (0.1.x wrote the same map and confidence twice)."""
    deep = {"epochs": 2, "channels": 8, "batch_size": 64}
    cfg = make_project(tmp_path / "p", models={"cnn": deep, "resnet": deep}, patch={"size": 3})
    proc = run_cli("run", cfg, "--out", tmp_path / "runs", "--run-id", "r", "--engine", "local", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "r"
    with (
        rasterio.open(run / "maps" / "cnn_confidence.tif") as a,
        rasterio.open(run / "maps" / "resnet_confidence.tif") as b,
    ):
        ca, cb = a.read(1), b.read(1)
    assert ca.shape == cb.shape and not np.array_equal(ca, cb)
    res = load_model(run / "models" / "resnet.pt")
    assert len(res.net.blocks) == MIN_RESIDUAL_BLOCKS and all(b.crop == 0 for b in res.net.blocks)
    # the map equals the per-pixel network on the scene's own 3 x 3 patches (dense inference stays exact)
    with rasterio.open(cfg.parent / "scene.tif") as src:
        img = src.read().astype(np.float32)
    img[:, img.sum(0) == 0] = np.nan
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)), constant_values=np.nan)
    patches = np.ascontiguousarray(np.moveaxis(sliding_window_view(pad, (3, 3), axis=(1, 2)), 0, 2)).reshape(
        -1, 3, 3, 3
    )
    labels, _ = res.predict_patches(patches)
    with rasterio.open(run / "maps" / "resnet.tif") as src:
        np.testing.assert_array_equal(src.read(1), labels.reshape(cb.shape))
