"""A full disk or a failed write never leaves an output that looks finished.

Real file systems where the kernel allows it (a small tmpfs, mounted by root; skipped
otherwise) and a writer patched to fail in the middle of a file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).parent))
from tiny_project import make_project  # noqa: E402

from pipeline.core.errors import OutOfSpaceError, OutputWriteError  # noqa: E402
from pipeline.inputs.raster import RasterStack  # noqa: E402
from pipeline.mapping import class_maps
from pipeline.mapping import classify as mapping

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_fs(tmp_path):
    """Mount a tmpfs of the given size (bytes) and return its path; skip where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(size: int, options: str = "") -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        opts = f"size={size}" + (f",{options}" if options else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _noisy_model(stack: RasterStack, tmp_path: Path):
    """A fully grown tree on random labels: its map is noise that no compression can shrink."""
    from pipeline.models.base import ModelMeta, TrainingData
    from pipeline.models.settings import DecisionTreeConfig
    from pipeline.models.trees import DecisionTreeModel
    from pipeline.sampling.patches import extract_patches, open_patches

    rng = np.random.default_rng(1)
    n = 2000
    rows, cols = rng.integers(0, stack.grid.height, n), rng.integers(0, stack.grid.width, n)
    y = rng.integers(1, 8, n)
    store = open_patches(
        extract_patches(stack, pd.DataFrame({"row": rows, "col": cols}), 1, tmp_path / "p.npy", progress=False)
    )
    meta = ModelMeta(
        "decision_tree", stack.band_names, list(range(1, 8)), [f"c{i}" for i in range(1, 8)], ["#000000"] * 7, 1
    )
    return DecisionTreeModel(DecisionTreeConfig(), meta, seed=0).fit(
        TrainingData(store, y, np.arange(n), np.zeros((n, 2)), stack.band_names)
    )


@pytest.fixture
def noisy_scene(tmp_path):
    from conftest import write_raster

    rng = np.random.default_rng(0)
    path = write_raster(
        tmp_path / "noise.tif", rng.integers(1, 60000, (3, 200, 200), dtype=np.uint16), descriptions=["a", "b", "c"]
    )
    with RasterStack.open(path) as stack:
        model = _noisy_model(stack, tmp_path)
    return path, model


def test_full_disk_map_is_one_clear_error_and_leaves_nothing(small_fs, noisy_scene):
    path, model = noisy_scene
    with RasterStack.open(path) as stack:
        # how much the map and its confidence take when there is room
        done = mapping.classify_raster(
            model,
            stack,
            path.parent / "map.tif",
            path.parent / "map_confidence.tif",
            window_size=64,
            workers=1,
            progress=False,
        )
        size = os.path.getsize(done["path"]) + os.path.getsize(done["confidence_path"])
        assert size > 16 * 1024
        fs = small_fs(size // 2)
        with pytest.raises(OutOfSpaceError) as exc:
            mapping.classify_raster(
                model, stack, fs / "map.tif", fs / "map_confidence.tif", window_size=64, workers=1, progress=False
            )
    msg = str(exc.value)
    assert str(fs) in msg and "no space left" in msg and "needs about" in msg and "\n" not in msg
    assert sorted(os.listdir(fs)) == []  # no map, no confidence, no .raw or .cog temporaries


def test_full_disk_map_cli_is_one_line_exit_4(small_fs, noisy_scene, tmp_path):
    path, model = noisy_scene
    model_path = model.save(tmp_path / f"tree{_suffix()}")
    fs = small_fs(8 * 1024)
    proc = run_cli(
        "map",
        "--model",
        str(model_path),
        "--raster",
        str(path),
        "--out",
        str(fs / "m.tif"),
        "--confidence",
        str(fs / "c.tif"),
        "--no-progress",
        quiet_warnings=True,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 4, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("landcover: error: ") and str(fs) in lines[0], proc.stderr
    assert "needs about" in lines[0]
    assert os.listdir(fs) == []


def test_read_only_output_folder_is_one_line(small_fs, noisy_scene, tmp_path):
    path, model = noisy_scene
    model_path = model.save(tmp_path / f"tree{_suffix()}")
    ro = small_fs(64 * 1024, "ro")
    proc = run_cli(
        "map",
        "--model",
        str(model_path),
        "--raster",
        str(path),
        "--out",
        str(ro / "m.tif"),
        "--no-progress",
        quiet_warnings=True,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(ro) in lines[0], proc.stderr
    cfg = make_project(tmp_path / "p")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--out", str(ro / "runs")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(ro) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_patch_store_on_full_disk_is_an_error_not_a_bus_error(small_fs, tmp_path):
    """The patch store is memory-mapped; writing into a sparse mapping on a full disk is SIGBUS.
    In a child process, so that a regression kills the child, not the test session."""
    from conftest import write_raster

    img = write_raster(tmp_path / "s.tif", np.ones((4, 64, 64), np.float32), descriptions=list("abcd"))
    fs = small_fs(64 * 1024)  # 3000 patches of 4 x 9 x 9 float32 need 3.7 MiB
    code = f"""
import numpy as np, pandas as pd
from pipeline.sampling.patches import extract_patches
from pipeline.inputs.raster import RasterStack
from pipeline.core.errors import OutOfSpaceError
rng = np.random.default_rng(0)
s = pd.DataFrame({{"row": rng.integers(0, 64, 3000), "col": rng.integers(0, 64, 3000)}})
with RasterStack.open([{str(img)!r}]) as st:
    try:
        extract_patches(st, s, 9, {str(fs / "patches.npy")!r}, progress=False)
    except OutOfSpaceError as e:
        print("OUT OF SPACE:", e)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "OUT OF SPACE:" in proc.stdout and "patches.npy" in proc.stdout and "needs about 3.7 MB" in proc.stdout
    assert os.listdir(fs) == []  # the temporary store is gone


def _suffix() -> str:
    from pipeline.models import MODEL_SUFFIX

    return MODEL_SUFFIX["decision_tree"]


class _FailAfter:
    """Wraps a rasterio dataset opened for writing: the third window write fails as a full disk would."""

    def __init__(self, ds, counter):
        self._ds, self._counter = ds, counter

    def write(self, *a, **k):
        self._counter[0] += 1
        if self._counter[0] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", self._ds.name)
        return self._ds.write(*a, **k)

    def __getattr__(self, name):
        return getattr(self._ds, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._ds.__exit__(*exc)


@pytest.mark.parametrize("failure", ["raises_mid_file", "truncated_on_close"])
def test_failed_map_write_is_not_recorded_or_cached_and_next_run_recomputes(tmp_path, monkeypatch, failure):
    from pipeline.config import load_config
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_one, train_model

    cfg, base = load_config(make_project(tmp_path / "p"))
    out = tmp_path / "runs"
    ctx = init_run_dir(cfg, base, out=out, run_id="r1", progress=False)
    run_one(ctx, "prepare")
    train_model(ctx, "decision_tree")

    if failure == "raises_mid_file":
        real_open, counter = rasterio.open, [0]

        def failing_open(fp, mode="r", *a, **k):
            ds = real_open(fp, mode, *a, **k)
            return _FailAfter(ds, counter) if mode == "w" else ds

        monkeypatch.setattr(mapping.rasterio, "open", failing_open)
        expected = OutOfSpaceError
    else:
        # GDAL reports a failed flush at close only in its log: simulate a raw file cut short.
        real_write = mapping._write_windows

        def truncating(model, stack, windows, halo, profile, raw_map, *rest):
            real_write(model, stack, windows, halo, profile, raw_map, *rest)
            with open(raw_map, "r+b") as f:
                f.truncate(os.path.getsize(raw_map) // 2)

        monkeypatch.setattr(mapping, "_write_windows", truncating)
        expected = (OutputWriteError, rasterio.errors.RasterioIOError)

    with pytest.raises(expected):
        run_one(ctx, "map", "decision_tree")
    run = ctx.run_dir
    assert not (run / "maps" / "decision_tree.tif").exists()
    assert not (run / "stages" / "map-decision_tree.json").exists()
    assert not [p for p in (run / "maps").iterdir() if p.name.startswith(".")] if (run / "maps").exists() else True
    assert not list((out / ".stage-cache").glob("map-*/*/record.json"))

    monkeypatch.undo()
    rec = run_one(ctx, "map", "decision_tree")
    assert rec["cached"] is False and rec["source"] is None  # computed, not restored
    with rasterio.open(run / "maps" / "decision_tree.tif") as m:
        labels = m.read(1)
    assert set(np.unique(labels)) <= {1, 2, 3, 255} and (labels != 255).all()
    class_maps.verify_raster(run / "maps" / "decision_tree.tif")
    # and a new run directory restores the good map from the store
    ctx2 = init_run_dir(cfg, base, out=out, run_id=f"r2-{uuid.uuid4().hex[:6]}", progress=False)
    assert run_one(ctx2, "prepare")["source"] == "store"
    assert all(rec["source"] == "store" for rec in train_model(ctx2, "decision_tree"))
    assert run_one(ctx2, "map", "decision_tree")["source"] == "store"
    with rasterio.open(ctx2.run_dir / "maps" / "decision_tree.tif") as m2:
        np.testing.assert_array_equal(m2.read(1), labels)
