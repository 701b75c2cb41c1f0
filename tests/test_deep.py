"""Deep patch classifiers: dense-exact inference, training, determinism, persistence."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import rasterio
import torch
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.transform import from_origin

from pipeline.core.errors import InputError
from pipeline.models import build_model, load_model, model_class
from pipeline.models.base import ModelMeta, TrainingData
from pipeline.models.deep import (
    PatchResNet,
    band_stats,
    load_deep,
    randomize_batchnorm,
    save_learning_curves,
    shift_table,
    trunk_layers,
)
from pipeline.models.settings import CNNConfig, ResNetConfig

CLASS_IDS = [2, 5, 9]
TINY = dict(channels=8, epochs=3, batch_size=32, dropout=0.1)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def make_meta(kind: str, k: int, bands: int = 3, extra=None) -> ModelMeta:
    return ModelMeta(
        kind,
        [f"band_{i}" for i in range(1, bands + 1)],
        CLASS_IDS,
        ["a", "b", "c"],
        ["#ff0000", "#00ff00", "#0000ff"],
        k,
        extra or {},
    )


def make_model(kind: str, k: int, bands: int = 3, seed: int = 0, **over):
    cfg = (CNNConfig if kind == "cnn" else ResNetConfig)(**{**TINY, **over})
    m = build_model(kind, cfg, make_meta(kind, k, bands), seed=seed, device="cpu")
    m.progress = False
    return m


def separable(n: int, k: int, seed: int, bands: int = 3, nan_frac: float = 0.05) -> TrainingData:
    """Class c has band c brighter (raw units around 1000); a few NaN pixels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = (1000 + 40 * rng.normal(size=(n, bands, k, k))).astype(np.float32)
    for c in range(3):
        p[y == c, c] += 150
    p[rng.random(p.shape) < nan_frac] = np.nan
    xy = np.stack([rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)], axis=1)
    return TrainingData(p, np.asarray(CLASS_IDS)[y], np.arange(n), xy, [f"band_{i}" for i in range(1, bands + 1)])


def all_patches(block: np.ndarray, k: int) -> np.ndarray:
    """(bands, H+2h, W+2h) -> (H*W, bands, k, k) patches centred on every core pixel, row-major."""
    v = sliding_window_view(block, (k, k), axis=(1, 2))  # (bands, H, W, k, k)
    return np.ascontiguousarray(np.moveaxis(v.reshape(block.shape[0], -1, k, k), 0, 1))


def randomised(kind: str, k: int, seed: int = 0):
    m = make_model(kind, k, seed=seed)
    randomize_batchnorm(m.net, seed)
    m.norm_mean = np.array([1000, 990, 1010], np.float32)
    m.norm_std = np.array([50, 60, 40], np.float32)
    return m


# ------------------------------------------------------------------------------------------------
# Architecture
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,layers", [(1, 0), (3, 1), (5, 2), (13, 6)])
def test_trunk_layers(k, layers):
    assert trunk_layers(k) == layers


def test_even_patch_size_rejected():
    with pytest.raises(InputError, match="odd"):
        make_model("cnn", 4)


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9, 11, 13])
@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_patch_collapses_to_one_pixel(kind, k):
    m = make_model(kind, k)
    out = m.net.eval()(torch.zeros(2, 3, k, k))
    assert out.shape == (2, 3, 1, 1)
    n_conv3 = sum(1 for mod in m.net.modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3))
    assert n_conv3 == (k - 1) // 2
    if kind == "resnet":
        assert sum(1 for b in m.net.blocks if b.crop) == (k - 1) // 4  # 3x3 blocks, as many as k allows
        assert len(m.net.blocks) == max(2, (k - 1) // 4)  # topped up with pointwise blocks
        assert m.net.stem[0].kernel_size == ((3, 3) if ((k - 1) // 2) % 2 else (1, 1))


def test_stochastic_depth_survival_decays_linearly():
    net = PatchResNet(3, 3, 13, channels=8, stochastic_depth=0.3)
    assert [b.survival for b in net.blocks] == pytest.approx([0.9, 0.8, 0.7])
    x = torch.randn(4, 3, 13, 13)
    net.eval()
    assert torch.equal(net(x), net(x))  # identity path at eval: deterministic


# ------------------------------------------------------------------------------------------------
# Dense inference equals per-patch inference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,k", [("cnn", 5), ("cnn", 7), ("resnet", 1), ("resnet", 3), ("resnet", 5), ("resnet", 7), ("resnet", 9)]
)
def test_dense_equals_patches_random_init(kind, k):
    m = randomised(kind, k, seed=3)
    rng = np.random.default_rng(1)
    h = k // 2
    block = (1000 + 50 * rng.normal(size=(3, 23 + 2 * h, 19 + 2 * h))).astype(np.float32)
    block[:, : h + 1, :] = np.nan  # raster edge: NaN padding plus one invalid row
    block[:, :, -h:] = np.nan
    block[1, 10, 7] = np.nan  # a nodata pixel in one band
    dense = m.block_logits(block)
    patch = m.patch_logits(all_patches(block, k))
    assert dense.shape == (3, 23, 19)
    flat = dense.reshape(3, -1).T
    assert np.abs(flat - patch).max() < 1e-4
    assert np.array_equal(flat.argmax(1), patch.argmax(1))
    lab_d, conf_d = m.predict_block(block)
    lab_p, conf_p = m.predict_patches(all_patches(block, k))
    assert lab_d.dtype == np.int64 and conf_d.dtype == np.float32
    assert set(np.unique(lab_d)) <= set(CLASS_IDS)
    assert np.array_equal(lab_d.ravel(), lab_p)
    assert np.allclose(conf_d.ravel(), conf_p, atol=1e-5)


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_dense_row_chunks_are_exact(kind):
    m = randomised(kind, 7)
    block = np.random.default_rng(2).normal(1000, 50, size=(3, 30, 26)).astype(np.float32)
    full = m.block_logits(block)
    m.dense_chunk_pixels = 21  # one output row per chunk
    assert np.abs(m.block_logits(block) - full).max() < 1e-5
    m.dense_chunk_pixels = 3 * 20 + 1  # three rows, uneven last chunk
    assert np.abs(m.block_logits(block) - full).max() < 1e-5


def test_projection_block_is_dense_exact():
    net = randomize_batchnorm(PatchResNet(3, 4, 13, channels=8, widths=[8, 16, 12]), 1).eval()
    assert isinstance(net.blocks[1].proj, torch.nn.Sequential)
    x = torch.randn(1, 3, 20, 18)
    with torch.inference_mode():
        dense = net(x)[0]
        patches = torch.from_numpy(all_patches(x[0].numpy(), 13))
        per = net(patches)[:, :, 0, 0].T.reshape(4, 8, 6)
    assert torch.allclose(dense, per, atol=1e-4)


def test_larger_patches_are_centre_cropped():
    m = randomised("cnn", 5)
    p = np.random.default_rng(0).normal(1000, 50, size=(6, 3, 9, 9)).astype(np.float32)
    assert np.array_equal(m.patch_logits(p), m.patch_logits(p[:, :, 2:7, 2:7]))
    with pytest.raises(InputError):
        m.patch_logits(p[:, :, :3, :3])
    with pytest.raises(InputError, match="bands"):
        m.patch_logits(p[:, :2])


def _write_tif(path, data, nodata):
    prof = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32633",
        transform=from_origin(500000, 4000000, 10, 10),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_classify_raster_matches_patches_at_edges_and_seams(tmp_path, kind):
    from pipeline.inputs.raster import RasterStack
    from pipeline.mapping.classify import classify_raster

    k, h = 7, 3
    rng = np.random.default_rng(5)
    H, W = 37, 45
    cls = (np.arange(W)[None, :] // 15 + np.arange(H)[:, None] // 19) % 3
    data = (1000 + 40 * rng.normal(size=(3, H, W))).astype(np.float32)
    for c in range(3):
        data[c][cls == c] += 150
    data = np.clip(data, 1, None).astype(np.uint16)
    data[:, :5, :4] = 0  # nodata corner
    data[2, 20, 30] = 0  # one band missing at one pixel
    path = tmp_path / "scene.tif"
    _write_tif(path, data, nodata=0)

    raw = np.where(data == 0, np.nan, data.astype(np.float32))
    padded = np.pad(raw, ((0, 0), (h, h), (h, h)), constant_values=np.nan)
    patches = all_patches(padded, k)  # (H*W, 3, k, k), cut by hand
    # briefly trained model (train on a random subset of the scene's own patches)
    idx = rng.choice(H * W, 600, replace=False)
    train = TrainingData(
        patches[idx],
        np.asarray(CLASS_IDS)[cls.ravel()[idx]],
        np.arange(600),
        np.zeros((600, 2)),
        ["band_1", "band_2", "band_3"],
    )
    m = make_model(kind, k, epochs=2)
    m.fit(train)
    assert m.map_workers == 1

    with RasterStack.open(path) as stack:
        classify_raster(
            m, stack, tmp_path / "map.tif", tmp_path / "conf.tif", window_size=16, workers=2, progress=False
        )
        # logits window by window, as the mapper reads them (halo, NaN outside), vs per-patch logits
        per_patch = m.patch_logits(patches).reshape(H, W, 3)
        for win in stack.windows(16):
            block = stack.read(win, halo=h)
            dense = np.moveaxis(m.block_logits(block), 0, -1)
            r, c = int(win.row_off), int(win.col_off)
            ref = per_patch[r : r + int(win.height), c : c + int(win.width)]
            valid = np.isfinite(raw[:, r : r + int(win.height), c : c + int(win.width)]).all(0)
            assert np.abs(dense - ref)[valid].max() < 1e-4
            assert np.array_equal(dense.argmax(-1)[valid], ref.argmax(-1)[valid])
    with rasterio.open(tmp_path / "map.tif") as src:
        mp = src.read(1)
    with rasterio.open(tmp_path / "conf.tif") as src:
        cf = src.read(1)
    labels, conf = m.predict_patches(patches)
    labels, conf = labels.reshape(H, W), conf.reshape(H, W)
    valid = np.isfinite(raw).all(0)
    assert np.array_equal(mp[valid], labels[valid])
    assert np.all(mp[~valid] == 255)
    # confidence is written as uint8 whole percent, 255 where no data (pipeline.mapping.legends)
    assert np.all(cf[~valid] == 255)
    assert np.abs(cf[valid].astype(int) - np.rint(conf[valid] * 100)).max() <= 1
    # edges and seams explicitly among the compared pixels
    seam_rows, seam_cols = [0, 15, 16, 31, 32, H - 1], [0, 15, 16, 31, 32, W - 1]
    assert valid[np.ix_(seam_rows, seam_cols)].sum() >= 30


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_learns_separable_problem(kind):
    from sklearn.metrics import f1_score

    train, val, test = separable(600, 5, 0), separable(200, 5, 1), separable(300, 5, 2)
    m = make_model(kind, 5, epochs=6)
    m.fit(train, val)
    pred, conf = m.predict_patches(test.patches)
    assert f1_score(test.y, pred, average="macro") > 0.9
    assert np.all((conf > 0) & (conf <= 1))
    assert len(m.history) == m.fit_info["epochs_run"] and m.fit_info["epochs_run"] >= 1
    assert set(m.history[0]) == {"epoch", "train_loss", "val_loss", "val_macro_f1", "kept"}
    for key in ("epochs_run", "best_epoch", "device", "train_samples_per_s", "fit_seconds"):
        assert key in m.fit_info
    assert m.fit_info["device"] == "cpu" and m.fit_info["train_samples_per_s"] > 0
    # training-split statistics stored with the model, over valid pixels only
    assert np.allclose(m.norm_mean, band_stats(train.patches)[0])
    assert np.all(np.abs(m.norm_mean - 1050) < 30)


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_same_seed_same_weights(kind):
    train, val = separable(200, 5, 0), separable(60, 5, 1)
    a = (
        make_model(kind, 5, seed=7, epochs=2, stochastic_depth=0.2)
        if kind == "resnet"
        else make_model(kind, 5, seed=7, epochs=2)
    )
    b = (
        make_model(kind, 5, seed=7, epochs=2, stochastic_depth=0.2)
        if kind == "resnet"
        else make_model(kind, 5, seed=7, epochs=2)
    )
    c = make_model(kind, 5, seed=8, epochs=2)
    state = torch.get_rng_state()
    for m in (a, b, c):
        m.fit(train, val)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert not torch.are_deterministic_algorithms_enabled()  # global flag restored
    sa, sb, sc = a.net.state_dict(), b.net.state_dict(), c.net.state_dict()
    assert all(torch.equal(sa[key], sb[key]) for key in sa)
    assert not all(torch.equal(sa[key], sc[key]) for key in sa if sa[key].is_floating_point())
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_early_stopping_restores_best_epoch():
    from sklearn.metrics import f1_score

    train = separable(300, 5, 0)
    val = separable(90, 5, 1)
    val = dataclasses.replace(val, y=np.random.default_rng(9).permutation(val.y))  # noisy target: F1 wanders
    m = make_model("cnn", 5, epochs=25, patience=2, lr=5e-2)
    m.fit(train, val)
    f1s = [h["val_macro_f1"] for h in m.history]
    best = int(np.argmax(f1s)) + 1  # first maximum
    assert m.fit_info["best_epoch"] == best
    assert m.fit_info["epochs_run"] == min(25, best + 2)
    assert m.fit_info["stopped_early"] == (m.fit_info["epochs_run"] < 25)
    pred, _ = m.predict_patches(val.patches)
    assert f1_score(val.y, pred, average="macro", zero_division=0) == pytest.approx(f1s[best - 1], abs=1e-12)


def test_without_validation_keeps_last_epoch():
    m = make_model("resnet", 5, epochs=3)
    m.fit(separable(120, 5, 0), None)
    assert m.fit_info["epochs_run"] == 3 and m.fit_info["best_epoch"] == 3
    assert m.fit_info["validation_samples"] == 0
    assert all(h["val_loss"] is None and h["val_macro_f1"] is None for h in m.history)
    empty = separable(0, 5, 1)
    m2 = make_model("resnet", 5, epochs=2)
    m2.fit(separable(120, 5, 0), empty)
    assert m2.fit_info["epochs_run"] == 2


@pytest.mark.parametrize(
    "over",
    [
        dict(optimizer="sgd", schedule="onecycle", class_balance="sampler"),
        dict(optimizer="adamw", schedule="none", class_balance="none", amplitude_scale=(1.0, 1.0)),
        dict(shift=1),
    ],
)
def test_training_options_run(over):
    train = separable(150, 5, 0)
    m = make_model("resnet", 5, epochs=2, **over)
    m.fit(train, separable(40, 5, 1))
    assert m.fit_info["epochs_run"] >= 1 and np.isfinite(m.history[0]["train_loss"])


def test_bad_training_inputs():
    m = make_model("cnn", 5)
    bad = separable(20, 5, 0)
    with pytest.raises(InputError, match="class id 77"):
        m.fit(dataclasses.replace(bad, y=np.full(20, 77)))
    with pytest.raises(InputError, match="patches"):
        m.fit(separable(20, 7, 0))
    with pytest.raises(ValueError, match="amplitude_scale"):  # the settings refuse it before any fit
        make_model("cnn", 5, amplitude_scale=(1.2, 0.8))


def test_class_imbalance_loss_weights_learn_minority():
    from sklearn.metrics import recall_score

    rng = np.random.default_rng(0)
    tr = separable(600, 5, 0)
    keep = np.flatnonzero((tr.y != CLASS_IDS[2]) | (rng.random(600) < 0.1))  # class 9 rare (~20 samples)
    tr = tr.subset(keep)
    m = make_model("cnn", 5, epochs=6, class_balance="loss")
    m.fit(tr)
    te = separable(300, 5, 3)
    pred, _ = m.predict_patches(te.patches)
    assert recall_score(te.y, pred, labels=[CLASS_IDS[2]], average="macro") > 0.8


def test_augmentation_is_dihedral_and_amplitude_scaled():
    m = make_model("cnn", 5, amplitude_scale=(0.5, 2.0))
    m.norm_mean, m.norm_std = np.zeros(3, np.float32), np.ones(3, np.float32)
    x = torch.arange(4 * 3 * 25, dtype=torch.float32).reshape(4, 3, 5, 5) + 1
    out = m._augment(x.clone(), torch.Generator().manual_seed(0), m._norm_tensors())
    for i in range(4):
        images = [torch.rot90(t, r, dims=(-2, -1)) for t in (x[i], x[i].transpose(-1, -2)) for r in range(4)]
        ratios = [(out[i] / im) for im in images]
        hits = [r for r in ratios if torch.allclose(r, r.flatten()[0].expand_as(r), rtol=1e-5)]
        assert len(hits) == 1
        assert 0.5 <= float(hits[0].flatten()[0]) <= 2.0


def test_shift_table_same_group_and_class_within_radius():
    xy = np.array([[5, 5], [15, 5], [25, 5], [15, 15], [45, 5]], float)  # 10 m pixels
    groups = np.array([1, 1, 1, 2, 1])
    y = np.array([0, 0, 1, 0, 0])
    indptr, nb = shift_table(xy, groups, y, shift=1, pixel_size=None)
    rows = [sorted(nb[indptr[i] : indptr[i + 1]].tolist()) for i in range(5)]
    assert rows == [[0, 1], [0, 1], [2], [3], [4]]


def test_cpu_amp_and_channels_last_path():
    """The CUDA-only switches (autocast, channels-last) exercised on the CPU with bfloat16."""
    m = make_model("resnet", 5, epochs=2)
    m.device_settings = dataclasses.replace(m.device_settings, amp=True, amp_dtype=torch.bfloat16, channels_last=True)
    m.fit(separable(200, 5, 0), separable(60, 5, 1))
    assert m.fit_info["device_settings"]["channels_last"] is True
    block = np.random.default_rng(0).normal(1050, 60, size=(3, 14, 12)).astype(np.float32)
    dense = m.block_logits(block)
    per = m.patch_logits(all_patches(block, 5))
    assert np.abs(dense.reshape(3, -1).T - per).max() < 1e-4


# ------------------------------------------------------------------------------------------------
# Persistence and curves
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_save_load_round_trip(tmp_path, kind):
    m = make_model(kind, 5, epochs=2)
    m.fit(separable(150, 5, 0), separable(40, 5, 1))
    path = m.save(tmp_path / f"{kind}.pt")
    assert path.exists() and not list(tmp_path.glob(".*tmp*"))
    blob = torch.load(path, weights_only=True)  # only plain types and tensors in the file
    assert blob["kind"] == kind and blob["meta"]["class_ids"] == CLASS_IDS
    for loaded in (load_deep(path), load_model(path)):
        assert type(loaded) is model_class(kind)
        assert loaded.meta == m.meta and loaded.settings == m.settings
        assert loaded.history == m.history and loaded.fit_info == m.fit_info
        p = separable(50, 5, 4).patches
        assert np.array_equal(loaded.patch_logits(p), m.patch_logits(p))
        assert all(np.array_equal(a, b) for a, b in zip(loaded.predict_patches(p), m.predict_patches(p)))


def test_load_rejects_other_files(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a saved deep model"):
        load_deep(bad)
    torch.save({"format": "something-else"}, tmp_path / "y.pt")
    with pytest.raises(InputError, match="not a saved deep model"):
        load_deep(tmp_path / "y.pt")
    with pytest.raises(InputError, match="not found"):
        load_deep(tmp_path / "missing.pt")


def test_learning_curves_written(tmp_path):
    m = make_model("cnn", 5, epochs=2)
    m.fit(separable(100, 5, 0), separable(30, 5, 1))
    save_learning_curves(m.history, tmp_path / "c" / "curves.json", tmp_path / "c" / "curves.png")
    rows = json.loads((tmp_path / "c" / "curves.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["val_macro_f1"] is not None
    assert (tmp_path / "c" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    hist = [{"epoch": 1, "train_loss": 1.0, "val_loss": None, "val_macro_f1": None}]
    save_learning_curves(hist, tmp_path / "d.json", tmp_path / "d.png")  # no validation: still plots
    assert (tmp_path / "d.png").stat().st_size > 0


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_cpu_inference_layout_does_not_change_outputs(kind):
    m = randomised(kind, 7)
    block = np.random.default_rng(4).normal(1000, 50, size=(3, 20, 16)).astype(np.float32)
    m.cpu_channels_last = False
    ref = m.block_logits(block)
    ref_p = m.patch_logits(all_patches(block, 7))
    m.cpu_channels_last = True
    assert np.abs(m.block_logits(block) - ref).max() < 1e-4
    assert np.abs(m.patch_logits(all_patches(block, 7)) - ref_p).max() < 1e-4
    net, cl = m._inference_net()
    assert cl and net.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in net.modules())  # folded
    assert any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.net.modules())  # the model itself untouched


def test_inference_copy_follows_weight_changes():
    m = randomised("resnet", 5)
    p = np.random.default_rng(0).normal(1000, 50, size=(8, 3, 5, 5)).astype(np.float32)
    a = m.patch_logits(p)
    m.fold_batchnorm = False
    assert np.abs(m.patch_logits(p) - a).max() < 1e-4  # folding changes nothing beyond rounding
    m.fold_batchnorm = True
    with torch.no_grad():
        m.net.head.bias.add_(1.0)  # in-place change -> the cached inference copy is rebuilt
    assert np.allclose(m.patch_logits(p), a + 1.0, atol=1e-4)


def test_cpu_float16_autocast_with_grad_scaler_and_non_blocking():
    """The CUDA recipe (float16 autocast + GradScaler + non-blocking copies) run on the CPU."""
    m = make_model("cnn", 5, epochs=2)
    m.device_settings = dataclasses.replace(m.device_settings, amp=True, amp_dtype=torch.float16, non_blocking=True)
    assert m.device_settings.grad_scaler() is not None
    m.fit(separable(200, 5, 0), separable(60, 5, 1))
    assert all(np.isfinite(h["train_loss"]) for h in m.history)
    assert m.fit_info["device_settings"]["amp_dtype"] == "float16"


def test_memmap_patches_and_loader_workers_give_identical_fits(tmp_path):
    data = separable(160, 5, 0)
    np.save(tmp_path / "p.npy", data.patches)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    mapped = TrainingData(mm, data.y, data.groups, data.xy, data.band_names)
    a = make_model("cnn", 5, epochs=2)
    a.fit(data)
    b = make_model("cnn", 5, epochs=2, num_workers=1)
    b.fit(mapped)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert all(torch.equal(sa[key], sb[key]) for key in sa)


def test_empty_inputs():
    m = randomised("cnn", 5)
    labels, conf = m.predict_patches(np.zeros((0, 3, 5, 5), np.float32))
    assert labels.shape == (0,) and conf.shape == (0,)
    with pytest.raises(InputError, match="smaller"):
        m.predict_block(np.zeros((3, 4, 4), np.float32))


def test_concurrent_fits_in_threads_are_reproducible():
    # A flow's thread-pool runner may train two deep models at once; dropout draws from torch's
    # global RNG, so without serialising seeded regions the two fits would interleave draws.
    import threading

    data = separable(200, 5, 0)

    def fit():
        m = make_model("cnn", 5, epochs=2)
        m.fit(data)
        return m.net.state_dict()

    ref = fit()
    out = [None, None]

    def run(i):
        out[i] = fit()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(ref[k], o[k]) for o in out for k in ref)


def test_run_sets_progress_only_on_models_that_show_it():
    """The run's training stage sets ``progress``/``progress_desc`` on models that are ShowsProgress:
    the deep models are, a classical model (no bar of its own) is not."""
    from pipeline.models.base import ShowsProgress
    from pipeline.models.settings import DecisionTreeConfig

    assert isinstance(make_model("cnn", 5), ShowsProgress)
    assert make_model("resnet", 5).progress_desc is None
    tree = build_model("decision_tree", DecisionTreeConfig(), make_meta("decision_tree", 1), seed=0)
    assert not isinstance(tree, ShowsProgress)


def test_progress_bar_names_the_fit(capsys):
    """The bar of a deep model's second fit says what it is (set by the run's training stage)."""
    m = make_model("cnn", 5, epochs=1)
    m.progress, m.progress_desc = True, "train cnn (random-split fit, for the contrast)"
    m.fit(separable(60, 5, 0), None)
    assert "train cnn (random-split fit, for the contrast)" in capsys.readouterr().err
