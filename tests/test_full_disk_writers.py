"""Every kind of file a run writes, written to a full disk: one OutOfSpaceError naming the file and
the space it needs, and nothing left in the folder (#25.6d).

Two full disks: a real one (a tmpfs filled to the last byte: needs root to mount, skipped
otherwise) and the writer failing with ENOSPC part of the way through (``tests/disk_fills.py``;
runs anywhere). The space named is checked against the size of the same file written where there
is room. ``tests/test_full_disk.py`` runs whole runs into a full disk.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_raster

sys.path.insert(0, str(Path(__file__).parent))
from disk_fills import fill_while_writing  # noqa: E402

from pipeline.core.errors import OutOfSpaceError  # noqa: E402
from pipeline.inputs.class_table import ClassTable  # noqa: E402

CLASSES = ClassTable.of([1, 2, 3], ["water", "forest", "urban"], ["#2166ac", "#1b7837", "#e31a1c"])


def _metrics(d: Path) -> Path:
    from pipeline.core.atomic import write_json

    rng = np.random.default_rng(0)
    return write_json(d / "metrics.json", {"models": {f"m{i}": rng.random(200).tolist() for i in range(20)}})


def _parquet(d: Path) -> Path:
    from pipeline.runner.files import write_parquet

    rng = np.random.default_rng(0)
    return write_parquet(pd.DataFrame({"y_true": rng.integers(0, 9, 20000), "p": rng.random(20000)}), d / "m.parquet")


def _figure(d: Path) -> Path:  # the report's figures, the split map, learning curves
    from matplotlib.figure import Figure

    from pipeline.core.atomic import write_figure

    fig = Figure(figsize=(4, 4))
    fig.add_subplot().imshow(np.random.default_rng(0).random((200, 200)))
    return write_figure(d / "figure.png", fig)


def _legend(d: Path) -> Path:
    from pipeline.mapping.legends import write_class_legend

    return write_class_legend(d / "map_legend.png", CLASSES)


def _classical_model(d: Path) -> Path:
    from pipeline.models.base import ModelMeta, TrainingData
    from pipeline.models.settings import DecisionTreeConfig
    from pipeline.models.trees import DecisionTreeModel
    from pipeline.sampling.settings import FeatureConfig

    rng = np.random.default_rng(0)
    x = rng.random((3000, 3, 1, 1)).astype(np.float32)
    y = rng.integers(1, 4, 3000)
    meta = ModelMeta("decision_tree", ["a", "b", "c"], CLASSES.ids, CLASSES.names, CLASSES.colors, 1)
    data = TrainingData(x, y, np.arange(3000), np.zeros((3000, 2)), ["a", "b", "c"])
    settings = DecisionTreeConfig(features=FeatureConfig(indices=[], patch_stats=False))  # no kernels to compile
    return DecisionTreeModel(settings, meta, seed=0).fit(data).save(d / "decision_tree.skops")


def _deep_model(d: Path) -> Path:
    from pipeline.models.base import ModelMeta
    from pipeline.models.deep import CNNModel
    from pipeline.models.settings import CNNConfig

    meta = ModelMeta("cnn", ["a", "b", "c"], CLASSES.ids, CLASSES.names, CLASSES.colors, 5)
    return CNNModel(CNNConfig(channels=8), meta, seed=0).save(d / "cnn.pt")


def _class_map(d: Path) -> Path:
    d.mkdir(exist_ok=True)
    m = np.repeat(np.repeat(np.random.default_rng(0).integers(1, 4, (20, 20)), 3, 0), 3, 1).astype(np.uint8)
    return write_raster(d / "map.tif", m, crs="EPSG:32633", nodata=255)


def _polygons(d: Path) -> Path:
    from pipeline.mapping.polygons import write_polygons

    write_polygons(_class_map(d.parent / f"{d.name}-map"), d / "map.gpkg", CLASSES)
    return d / "map.gpkg"


def _stac(d: Path) -> Path:
    import pystac

    from pipeline.mapping.stac import write_run_catalog

    item = pystac.Item(
        "m", {"type": "Point", "coordinates": [10.0, 50.0]}, [10, 50, 10, 50], dt.datetime(2024, 1, 1), {}
    )
    write_run_catalog(d / "stac", "run", "a run", "its maps", [(item, d / "stac" / "m" / "m.json")])
    return d / "stac"


# writer, the file the error names (relative to the folder), the name its writer fails on in the
# simulation (the file, or one inside the folder it names); exact: the error names the file's size
WRITERS = {
    "metrics.json": (_metrics, "metrics.json", "metrics.json", True),
    "parquet": (_parquet, "m.parquet", None, True),  # Arrow writes in C++: real disk only
    "figure": (_figure, "figure.png", "figure.png", True),
    "legend": (_legend, "map_legend.png", "map_legend.png", True),
    "skops model": (_classical_model, "decision_tree.skops", "decision_tree.skops", True),
    "torch model": (_deep_model, "cnn.pt", None, True),  # torch writes in C++: real disk only
    "polygons": (_polygons, "map.gpkg", "map.gpkg", False),  # GDAL cannot say the size in advance
    "STAC catalog": (_stac, "stac", "catalog.json", False),
}


def _mount_full_tmpfs(d: Path) -> Path:
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
    st = os.statvfs(d)
    with open(d / ".filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize)
    return d


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _check(exc: OutOfSpaceError, d: Path, named: str, roomy: Path, exact: bool) -> None:
    msg = str(exc)
    assert msg.startswith(f"{d / named}: no space left on the device") and "\n" not in msg, msg
    assert [p.name for p in d.iterdir() if p.name != ".filler"] == []  # nothing half-written
    m = re.search(r"needs about ([\d.]+) (B|KB|MB)\b", msg)
    if exact:
        size = _bytes(roomy / named)
        assert m, msg
        assert abs(float(m[1]) * 1024 ** ["B", "KB", "MB"].index(m[2]) - size) <= max(0.01 * size, 52), (msg, size)


@pytest.mark.parametrize("what", list(WRITERS))
def test_a_full_disk_names_the_file_and_its_size(what, tmp_path):
    write, named, _, exact = WRITERS[what]
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    write(roomy)
    fs = _mount_full_tmpfs(tmp_path / "fs")
    try:
        with pytest.raises(OutOfSpaceError) as exc:
            write(fs)
        _check(exc.value, fs, named, roomy, exact)
    finally:
        subprocess.run(["umount", "-l", str(fs)], capture_output=True)


@pytest.mark.parametrize("what", [w for w, v in WRITERS.items() if v[2]])
def test_a_write_failing_for_space_names_the_file_and_its_size(what, tmp_path, monkeypatch):
    write, named, fails, exact = WRITERS[what]
    roomy, d = tmp_path / "roomy", tmp_path / "full"
    roomy.mkdir()
    d.mkdir()
    write(roomy)
    fill_while_writing(fails, room=64, setattr=monkeypatch.setattr)
    with pytest.raises(OutOfSpaceError) as exc:
        write(d)
    _check(exc.value, d, named, roomy, exact)
