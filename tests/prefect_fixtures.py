"""One Prefect test server per test session, shared by the flow tests.

``tests/conftest.py`` (not ours) sets PREFECT_HOME and the offline environment; this
module adds a session-wide ``prefect_test_harness`` that the flow test modules import.
The harness is entered once per process (several modules import the fixture, and pytest
would otherwise build it once per module) and left at exit.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HARNESS: dict = {}


def _start() -> str:
    if "url" not in _HARNESS:
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        cm = prefect_test_harness(server_startup_timeout=None)  # PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
        cm.__enter__()
        atexit.register(_stop)  # in case the fixture's own teardown never ran
        _HARNESS["cm"] = cm
        _HARNESS["url"] = str(PREFECT_API_URL.value())
    return _HARNESS["url"]


def _stop() -> None:
    cm = _HARNESS.pop("cm", None)
    _HARNESS.pop("url", None)
    if cm is not None:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def prefect_api():
    """The API URL of the session's Prefect test server (in-process flows use it automatically)."""
    yield _start()
    _stop()


def landcover_env(api_url: str) -> dict:
    """Environment for a ``landcover`` subprocess that reports to the test server."""
    env = dict(os.environ)
    env["PREFECT_API_URL"] = api_url
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return env


def landcover_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def run_landcover(*args: str, api_url: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        landcover_cmd(*args), cwd=REPO, env=landcover_env(api_url), capture_output=True, text=True, timeout=timeout
    )


def strip_timings(obj):
    """Metrics without the wall-clock fields (fit seconds, throughput) that differ run to run."""
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if not (k.endswith("seconds") or k.endswith("_per_s"))}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj
