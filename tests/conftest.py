"""Shared fixtures: the demo scene, the shared real scenes, small synthetic rasters."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Prefect must never reach out, and unit tests must not start an engine by accident.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
# Prefect sets up its logging once per process, on the first `from prefect import ...`, and its
# console handlers keep the sys.stderr of that moment: in a test, pytest's capture stream of that
# one test (capsys), closed when the test ends. Every later Prefect record (and the "Stopping
# temporary server" of the session's test server, at teardown or exit) then failed with
# "--- Logging error --- ValueError: I/O operation on closed file". The process's own stderr is
# never closed, and pytest's default fd-level capture still captures what is written to it.
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", "ext://sys.__stderr__")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_DEBUG_STREAM", "ext://sys.__stderr__")
# Under pytest-xdist (`make test` runs two workers) each worker has a Prefect home of its own:
# two temporary servers on one SQLite database would lock each other out.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["PREFECT_HOME"] = os.path.join(os.environ["PREFECT_HOME"], os.environ["PYTEST_XDIST_WORKER"])
    os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)
# One native (OpenMP/BLAS) thread per test process, set before numpy or torch load: the tests'
# processes (pytest, CLI subprocesses, Prefect servers, Dask workers) already share two cores,
# and the tiny nets and arrays of the tests gain nothing from a second thread: on this shared
# 2-core machine the CNN of tests/test_interrupt.py (131 parameters) trained 170-330 samples/s
# with torch's default of two threads against 2,300-4,300 samples/s with one.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import rasterio
from prefect_fixtures import prefect_api  # noqa: F401  (the session's Prefect test server)
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: object, quiet_warnings: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m pipeline.cli ARGS`` in a subprocess from the repository, output captured as text:
    its stderr holds only what the CLI printed (in process, threads left by earlier tests' Prefect
    servers and Dask clusters may log into a captured stream). ``quiet_warnings`` hides Python
    warnings (``PYTHONWARNINGS=ignore``) for tests that count the CLI's own lines."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"} if quiet_warnings else None
    cmd = [sys.executable, "-m", "pipeline.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env)


SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def dask_cluster(prefect_api):
    """``(cluster, client)``: one local Dask cluster (two single-thread worker processes) for the
    session, shared by the Dask tests instead of one per test. Started after the Prefect test server,
    so that flow tasks sent to its workers report to that server."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit="2GiB"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op torch thread for modules of tiny nets: they gain nothing from two, and on a
    shared 2-core machine two threads made those tests several times slower."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def nc_scene() -> Path:
    """Folder of the North Carolina demo scene (fetched once into the local cache)."""
    from pipeline.inputs.sample_data import scene_dir

    return scene_dir("nc-landsat7")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str = "EPSG:32633",
    origin=(500000.0, 4000000.0),
    res: float = 10.0,
    nodata=None,
    descriptions=None,
) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=from_origin(origin[0], origin[1], res, res),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, 1):
                dst.set_band_description(i, d)
    return path


@pytest.fixture
def synthetic_scene(tmp_path: Path):
    """A 3-band 60 x 80 uint16 raster with two spectrally distinct halves and a nodata corner."""
    rng = np.random.default_rng(0)
    rows, cols = 60, 80
    data = np.empty((3, rows, cols), dtype=np.uint16)
    left = np.arange(cols) < cols // 2
    for b in range(3):
        base = np.where(left, 1000 + 300 * b, 3000 - 200 * b)
        data[b] = (base[None, :] + rng.integers(0, 50, size=(rows, cols))).astype(np.uint16)
    data[:, :5, :5] = 0  # nodata corner
    path = write_raster(tmp_path / "scene.tif", data, nodata=0, descriptions=["b1", "b2", "b3"])
    return path, data


# ----------------------------------------------------------------------------- test-fast
# `make test-fast` runs `-m "not e2e"`. A test is end to end when it runs the pipeline or a CLI
# command on data, needs a Prefect engine or the real scenes: these rules mark it so that no
# test file has to remember to. A module that runs whole pipelines in most tests is listed here.
E2E_FIXTURES = {"prefect_api", "nc_scene", "shared_data", "demo_run", "runs", "nine_tiles", "trained"}
E2E_MARKERS = {"prefect", "slow"}
# Single tests of otherwise fast modules that run a whole pipeline or a CLI in a subprocess.
E2E_TESTS = {
    "test_cli_hyperspectral_scene_with_a_rare_class",
    "test_report_md_escapes_class_and_band_names",
    "test_nine_tiles_with_train_validation_test_file_lists_run_end_to_end",
    "test_map_cli_with_dates_warns_in_one_line_and_points_to_dates",
    "test_a_malicious_pickle_is_refused_without_running_it",
    "test_a_skops_file_with_an_untrusted_type_is_refused",
    "test_damaged_model_files_are_one_line",
    "test_serve_takes_models_only_from_its_runs_directory",
    "test_split_files_that_cannot_work_stop_before_any_work",
    "test_the_cli_maps_with_a_model_saved_by_0_1_0",
    "test_map_command_writes_the_mmu_map_and_polygons_beside_the_map",
    "test_map_command_refuses_a_bad_mmu_and_a_non_geopackage",
    "test_a_redirected_run_log_holds_log_lines_only_and_ends_with_the_reuse_summary",
    "test_on_a_terminal_bars_show_and_no_log_line_is_glued_to_one",
}
E2E_MODULES = {
    "test_cli",
    "test_cli_errors",
    "test_cli_polish",
    "test_cache",
    "test_registry",
    "test_failed_models",
    "test_evidence",
    "test_geographic_crs",
    "test_group_statistics_run",
    "test_input_kinds",
    "test_map_nodata",
    "test_bench_baselines",
    "test_bench_deep",
    "test_bench_engines",
    "test_bench_scale",
    "test_split_cli",
    "test_write_failures",
    "test_full_disk",
    "test_unusable_labels",
    "test_layers",
}


# Unit tests that take several seconds each (property searches, subprocesses, loader workers,
# local Dask clusters).
HEAVY_NAMES = ("test_property_", "_in_two_processes", "loader_workers")
HEAVY_MODULES = {"test_dask_windows"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(h in item.name for h in HEAVY_NAMES) or (item.module and item.module.__name__ in HEAVY_MODULES):
            item.add_marker(pytest.mark.heavy)
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if (
            E2E_FIXTURES & set(getattr(item, "fixturenames", ()))
            or module in E2E_MODULES
            or getattr(item, "originalname", item.name) in E2E_TESTS
            or any(item.get_closest_marker(m) for m in E2E_MARKERS)
        ):
            item.add_marker(pytest.mark.e2e)


# ----------------------------------------------------------------------------- the rules above, checked
# When the run leaves e2e tests out (`make test-fast`), a test that is neither e2e nor heavy fails if
# it creates a run directory, runs the pipeline, or starts the CLI or a benchmark in a subprocess: a
# new end-to-end test cannot slip into the fast run unmarked. (A CLI call that stops at config
# validation in process creates no run directory.) `make test` runs everything and does not check.
_RUNNING: dict = {}


def _is_fast(item) -> bool:
    return not (item.get_closest_marker("e2e") or item.get_closest_marker("heavy"))


def _note(what: str) -> None:
    item = _RUNNING.get("item")
    if item is not None and _is_fast(item):
        _RUNNING.setdefault("seen", []).append(what)


def _watch(fn, what: str):
    import functools

    @functools.wraps(fn)
    def watched(*a, **k):
        _note(what)
        return fn(*a, **k)

    return watched


def pytest_configure(config):
    if "not e2e" not in (config.getoption("markexpr", "") or ""):
        return
    import subprocess

    import pipeline.runner.context as context_module
    import pipeline.runner.pipeline as pipeline_module

    context_module.init_run_dir = _watch(context_module.init_run_dir, "creates a run directory")
    pipeline_module.run_pipeline = _watch(pipeline_module.run_pipeline, "runs the pipeline")
    popen_init = subprocess.Popen.__init__

    def init(self, args, *a, **k):
        text = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
        if "pipeline.cli" in text or " bench." in text:
            _note(f"starts a subprocess ({text[:80]})")
        popen_init(self, args, *a, **k)

    subprocess.Popen.__init__ = init


def _checked(item, phase: str):
    if "not e2e" not in (item.config.getoption("markexpr", "") or ""):
        return (yield)
    _RUNNING.update(item=item, seen=[])
    try:
        result = yield
    finally:
        seen = _RUNNING.pop("seen", [])
        _RUNNING.pop("item", None)
    if seen:
        pytest.fail(
            f"{item.nodeid} ({phase}) {seen[0]} but is not marked e2e or heavy: add it to the rules in "
            "tests/conftest.py, or `make test-fast` runs it",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _checked(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _checked(item, "call"))
