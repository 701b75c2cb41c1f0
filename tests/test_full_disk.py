"""A run that finds the disk full, at any of its writes, stops with exit code 4 and one line naming
the file it was writing and the space that file needs; nothing half-written stays (#25.6d).

Each test resumes a finished run (its stage store left behind) from which one output was deleted,
so that the resumed run writes that output again while the disk is full. Two ways to fill it:

* a real file system: a small tmpfs (mounted by root; skipped where mounting is not permitted),
  filled with a filler file to a little less than the output needs;
* the writer of that one file failing with ENOSPC part of the way through (runs anywhere:
  ``tests/disk_fills.py``), under both engines.

Every test then frees the space, resumes again, and checks the space the error named against the
size of the file the resumed run wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from prefect_fixtures import landcover_env, prefect_api  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent))
from tiny_project import make_project  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN = "full"
# output -> (the stage record that must not exist after the failure, the part of the output's size
# left free on the real disk). What the stage writes before the output must fit: the report's
# largest figure is half the page's size. GDAL leaves out a GeoPackage layer's spatial index,
# without a word, when only the index does not fit (a valid file without it): half the size of
# splits.gpkg does not hold its layers.
TARGETS = {
    "splits.gpkg": ("prepare.json", 0.5),
    "models/decision_tree.skops": ("refit-decision_tree.json", 0.5),
    "report.html": ("report.json", 0.9),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """(config, runs folder) of one finished run named RUN of the tiny project."""
    root = tmp_path_factory.mktemp("full-disk")
    cfg = make_project(root / "project")
    proc = run_cli("run", cfg, "--out", root / "runs", "--run-id", RUN, "--engine", "local", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return cfg, root / "runs"


def _copy_without(runs: Path, dest: Path, target: str) -> Path:
    """The finished run copied to ``dest`` (no stage store: what is missing is computed again) without ``target``."""
    run = dest / RUN
    shutil.copytree(runs / RUN, run)
    (run / target).unlink()
    return run


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs of ``size`` bytes; skip where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True, text=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(fs: Path, leave: int) -> Path:
    """Take all but ``leave`` bytes of the file system at ``fs`` with one file."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - leave)
    return filler


def _size_named(line: str) -> float:
    """Bytes of the 'needs about N unit' of an error line."""
    m = re.search(r"needs about ([\d.]+) (B|KB|MB|GB)\b", line)
    assert m, line
    return float(m[1]) * 1024 ** ["B", "KB", "MB", "GB"].index(m[2])


def _check_failure(err: str, code: int, run: Path, target: str) -> str:
    """The exit code, the one line, and nothing left that looks complete; returns the line."""
    assert code == 4, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("landcover:")]
    assert len(lines) == 1, err
    path = run / target
    assert lines[0].startswith(f"landcover: error: {path}: no space left"), lines[0]
    assert not path.exists()
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.stem}.")]  # no temporary
    assert not (run / "stages" / TARGETS[target][0]).exists()  # the stage is not recorded as done
    return lines[0]


def _check_needed(line: str, run: Path, target: str) -> None:
    """The space the error named is the size of the file written once there was room (1% or one
    unit of the last digit shown: a report says how long its stages took)."""
    size = (run / target).stat().st_size
    assert abs(_size_named(line) - size) <= max(0.01 * size, 103), (line, size)


# ----------------------------------------------------------------------------- a real full disk
@pytest.mark.parametrize("target", list(TARGETS))
def test_a_real_full_disk_stops_the_run_at_the_file_it_was_writing(target, finished_run, tmpfs):
    cfg, runs = finished_run
    fs = tmpfs(8 << 20)
    run = _copy_without(runs, fs / "runs", target)
    size = (runs / RUN / target).stat().st_size
    filler = _fill(fs, int(size * TARGETS[target][1]))
    args = ("run", cfg, "--out", fs / "runs", "--resume", RUN, "--engine", "local", "--no-progress")
    proc = run_cli(*args, quiet_warnings=True)
    line = _check_failure(proc.stderr, proc.returncode, run, target)
    filler.unlink()  # space freed: the same command finishes the run
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    _check_needed(line, run, target)


# ----------------------------------------------------------------------------- one writer fails
@pytest.mark.parametrize("engine", ["local", "prefect"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_a_write_failing_for_space_stops_the_run_under_both_engines(target, engine, finished_run, tmp_path, request):
    cfg, runs = finished_run
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    if engine == "prefect":  # the session's Prefect server, not a temporary one per run
        env = {**landcover_env(request.getfixturevalue("prefect_api")), **env}
    run = _copy_without(runs, tmp_path / "runs", target)
    args = ["run", str(cfg), "--out", str(tmp_path / "runs"), "--resume", RUN, "--no-progress", "--engine"]
    script = [sys.executable, str(Path(__file__).with_name("disk_fills.py")), Path(target).name]
    proc = subprocess.run([*script, *args, engine], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    line = _check_failure(proc.stderr, proc.returncode, run, target)
    proc = run_cli(*args, "local")  # nothing fills: the run finishes
    assert proc.returncode == 0, proc.stderr
    _check_needed(line, run, target)
