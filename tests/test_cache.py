"""The stage store (pipeline.runner.store) as used by the in-process runner: hits, verification, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_raster

from pipeline.config import RunConfig
from pipeline.runner import store as cache
from pipeline.runner.context import init_run_dir
from pipeline.runner.pipeline import STAGES, run_pipeline


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(2)
    rows, cols = 40, 48
    cls = np.where(np.arange(cols)[None, :] < cols // 2, 1, 2) * np.ones((rows, 1), dtype=np.uint8)
    data = np.stack([1000 + 700 * (cls == b % 2 + 1) + rng.integers(0, 300, cls.shape) for b in range(3)])
    img = write_raster(tmp_path / "img.tif", data.astype(np.uint16), descriptions=["b1", "b2", "b3"])
    lab = write_raster(
        tmp_path / "labels.tif", np.where(rng.random(cls.shape) < 0.3, cls, 0).astype(np.uint8), nodata=0
    )
    return RunConfig.model_validate(
        {
            "rasters": {"paths": [str(img)]},
            "labels": {"path": str(lab)},
            "classes": [{"id": 1, "name": "west"}, {"id": 2, "name": "east"}],
            "patch": {"size": 3},
            "split": {"strategy": "random"},
            "models": {"decision_tree": {}},
        }
    )


def _run(cfg, tmp_path, run_id):
    ctx = init_run_dir(cfg, tmp_path, out=tmp_path / "runs", run_id=run_id, progress=False)
    run_pipeline(ctx)
    m = json.loads((ctx.run_dir / "manifest.json").read_text())
    return ctx, {s["name"]: s for s in m["stages"]}


def _entry(ctx, stage, model=None):
    return cache.store_entry(ctx, stage, model, cache.stage_key(ctx, stage, model))


def test_second_run_restores_every_stored_stage(scene, tmp_path):
    _, first = _run(scene, tmp_path, "a")
    assert not any(s["cached"] for s in first.values())
    ctx, second = _run(scene, tmp_path, "b")
    assert [n for n, s in second.items() if s["cached"]] == [
        "prepare",
        "fold-0:decision_tree",  # a random split has one fold, and no random contrast
        "refit:decision_tree",
        "train:decision_tree",
        "map:decision_tree",
        "assess",
    ]
    meta = json.loads((_entry(ctx, "train", "decision_tree") / "record.json").read_text())
    f = meta["files"]["models/decision_tree.skops"]
    assert f["bytes"] == (ctx.run_dir / "models" / "decision_tree.skops").stat().st_size
    assert f["blake2b"] == cache.file_digest(ctx.run_dir / "models" / "decision_tree.skops")


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_store_entry_is_dropped_and_recomputed(scene, tmp_path, damage):
    ctx, _ = _run(scene, tmp_path, "a")
    entry = _entry(ctx, "map", "decision_tree")
    stored = entry / "files" / "maps" / "decision_tree.tif"
    raw = stored.read_bytes()
    stored.unlink()  # break the hard link: damage the store only, as a disk fault would
    if damage == "truncate":
        stored.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # same size, one byte changed
        stored.write_bytes(raw[:-100] + bytes([raw[-100] ^ 0xFF]) + raw[-99:])
    ctx2, st = _run(scene, tmp_path, "b")
    assert st["train:decision_tree"]["cached"] and not st["map:decision_tree"]["cached"]
    assert (ctx2.run_dir / "maps" / "decision_tree.tif").read_bytes() == raw
    # the bad entry was replaced by a sound one, which the next run uses
    meta = json.loads((entry / "record.json").read_text())
    assert meta["from_run"] == "b"
    assert (
        cache.file_digest(entry / "files" / "maps" / "decision_tree.tif")
        == meta["files"]["maps/decision_tree.tif"]["blake2b"]
    )
    _, third = _run(scene, tmp_path, "c")
    assert third["map:decision_tree"]["cached"]


def test_a_failed_stage_leaves_no_record(scene, tmp_path, monkeypatch):
    ctx, _ = _run(scene, tmp_path, "a")
    ctx = init_run_dir(scene, tmp_path, out=tmp_path / "runs", run_id="a", resume=True, progress=False)

    def broken(c, m):
        raise OSError("disk full")

    # same key as before but the run-directory record and the store entry are gone: the stage must run
    (ctx.run_dir / "stages" / "map-decision_tree.json").unlink()
    cache._drop(_entry(ctx, "map", "decision_tree"), "removed by the test")
    monkeypatch.setitem(STAGES, "map", broken)
    run_pipeline(ctx)  # the failing model is recorded as failed; the run goes on
    assert json.loads((ctx.run_dir / "failed" / "decision_tree.json").read_text())["stage"] == "map"
    assert not (ctx.run_dir / "stages" / "map-decision_tree.json").exists()
    assert not _entry(ctx, "map", "decision_tree").exists()
    # an older record of the same stage is removed too when the rerun fails
    rec = {"stage": "assess", "key": "stale", "outputs": []}
    (ctx.run_dir / "stages" / "assess.json").write_text(json.dumps(rec))
    monkeypatch.setitem(STAGES, "assess", broken)
    with pytest.raises(OSError):
        cache.execute_stage(ctx, "assess", lambda c: STAGES["assess"](c, None), use_store=False)
    assert not (ctx.run_dir / "stages" / "assess.json").exists()


def test_the_code_fingerprint_covers_every_stage_package_but_not_the_cli(tmp_path):
    """A change in any stage's code (here a model and a split module, two levels down) gives
    another fingerprint; a change in the CLI keeps it."""
    import shutil

    from pipeline.runner.store import code_fingerprint, source_fingerprint

    pkg = Path(__file__).resolve().parents[1] / "pipeline"
    copy = tmp_path / "pipeline"
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("__pycache__"))
    base = source_fingerprint(copy)
    assert base == code_fingerprint()  # the copy is the package the store uses
    seen = {base}
    for rel in ("models/registry.py", "split/assign.py", "report/__init__.py"):
        with (copy / rel).open("a") as f:
            f.write("\n# edited\n")
        now = source_fingerprint(copy)
        assert now not in seen, rel
        seen.add(now)
    with (copy / "cli" / "main.py").open("a") as f:
        f.write("\n# edited\n")
    assert source_fingerprint(copy) in seen
