"""Which engine a run takes (issue #25.4): with no Prefect API configured, the default engine runs
the stages in process (no temporary server); with one configured, or with ``--dask``, it is a
Prefect flow run. The cost comparison itself is a benchmark (``landcover bench engines``,
docs/benchmarks.md), not a test.

End to end, both sides are checked on runs the suite makes anyway: the default engine with no API
in tests/test_console_output.py (manifest ``engine: local``, no server database made), and with the
session's Prefect server in tests/test_cli.py (``demo_run``: manifest ``engine: prefect``)."""

from __future__ import annotations

import pytest

from pipeline.cli.preflight import choose_engine
from pipeline.core.errors import InputError


def test_auto_takes_prefect_only_with_an_api_or_a_dask_cluster():
    assert choose_engine("auto", None, None)[0] == "local"
    assert choose_engine("auto", None, "http://127.0.0.1:4200/api")[0] == "prefect"
    assert choose_engine("auto", "tcp://127.0.0.1:8786", None)[0] == "prefect"
    assert choose_engine("prefect", None, None)[0] == "prefect"  # asked for: a temporary server
    assert choose_engine("local", None, "http://127.0.0.1:4200/api")[0] == "local"
    with pytest.raises(InputError, match="--engine"):
        choose_engine("dask", None, None)


@pytest.mark.heavy  # a fresh Python process that imports Prefect's settings: a few seconds
def test_an_api_url_in_the_active_prefect_profile_counts_as_configured(tmp_path):
    """``prefect config set PREFECT_API_URL=...`` writes the active profile, not the environment:
    the default engine must see it too (in a fresh process: Prefect reads its settings once)."""
    import os
    import subprocess
    import sys

    (tmp_path / "profiles.toml").write_text(
        'active = "remote"\n\n[profiles.remote]\nPREFECT_API_URL = "http://127.0.0.1:4321/api"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)
    code = (
        "from pipeline.cli.preflight import choose_engine, prefect_api_url\n"
        "print(prefect_api_url(), *choose_engine('auto', None, prefect_api_url()), sep='|')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    url, engine, why = out.stdout.strip().split("|")
    assert url == "http://127.0.0.1:4321/api" and engine == "prefect" and url in why
