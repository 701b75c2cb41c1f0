"""``--dask ADDRESS`` that cannot work (nothing listening, a port that accepts connections and
never answers, a scheme that is not Dask's) is one line naming the address, exit code 2, from
``map``, ``serve`` and ``run`` alike, checked before any work with a 3 s timeout: no tracebacks
from every task, no 20 s of connection retries, no hang."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_raster

from pipeline.cli.main import main
from pipeline.cli.preflight import CONNECT_TIMEOUT


@pytest.fixture
def addresses():
    """name -> address: nothing listening, a silent server, a scheme Dask does not speak."""
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead = free.getsockname()[1]
    free.close()  # nothing listens there now
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list = []

    def accept() -> None:
        while True:
            try:
                held.append(srv.accept())
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield {
        "dead": f"tcp://127.0.0.1:{dead}",
        "silent": f"tcp://127.0.0.1:{srv.getsockname()[1]}",
        "ftp": "ftp://127.0.0.1:21",
    }
    srv.close()
    for conn, _ in held:
        conn.close()


EXPECT = {
    "dead": "cannot reach 127.0.0.1:",
    "silent": f"accepts connections but did not answer as a Dask scheduler within {CONNECT_TIMEOUT:g} s",
    "ftp": "ftp:// is not a Dask scheduler address; give tcp://HOST:PORT",
}
CASES = ["dead", pytest.param("silent", marks=pytest.mark.heavy), "ftp"]


@pytest.fixture
def model_and_raster(tmp_path: Path) -> tuple[Path, Path]:
    from pipeline.models.base import ModelMeta, TrainingData
    from pipeline.models.settings import DecisionTreeConfig
    from pipeline.models.trees import DecisionTreeModel

    x = np.random.default_rng(0).integers(100, 5000, (50, 3)).astype(np.float32)
    meta = ModelMeta("decision_tree", ["b1", "b2", "b3"], [1, 2], ["a", "b"], ["#ff0000", "#0000ff"], 1)
    td = TrainingData(
        x[:, :, None, None], np.where(x[:, 0] > 2500, 1, 2), np.arange(50), np.zeros((50, 2)), meta.band_names
    )
    model = DecisionTreeModel(DecisionTreeConfig(), meta, seed=0).fit(td).save(tmp_path / "runs" / "tree.skops")
    raster = write_raster(tmp_path / "s.tif", np.ones((3, 8, 8), np.uint16), descriptions=["b1", "b2", "b3"])
    return model, raster


def _one_line(capsys, address: str, case: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"landcover: error: --dask {address}: ") and EXPECT[case] in err[0], err


@pytest.mark.parametrize("case", CASES)
def test_map_with_a_dask_address_that_cannot_work(case, addresses, model_and_raster, tmp_path, capsys):
    model, raster = model_and_raster
    address = addresses[case]
    rc = main(
        ["map", "--model", str(model), "--raster", str(raster), "--out", str(tmp_path / "m.tif"), "--dask", address]
    )
    assert rc == 2
    _one_line(capsys, address, case)
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("case", CASES)
def test_serve_with_a_dask_address_that_cannot_work(case, addresses, model_and_raster, tmp_path, capsys):
    model, _ = model_and_raster
    address = addresses[case]
    (tmp_path / "inbox").mkdir()
    rc = main(
        [
            "serve",
            str(REPO / "configs" / "demo.yaml"),
            "--once",
            "--inbox",
            str(tmp_path / "inbox"),
            "--outbox",
            str(tmp_path / "out"),
            "--model",
            str(model),
            "--runs",
            str(tmp_path / "runs"),
            "--dask",
            address,
        ]
    )
    assert rc == 2
    _one_line(capsys, address, case)
    assert not (tmp_path / "out").exists()  # stopped before the flow, which would create it


@pytest.mark.parametrize("case", ["silent"])
@pytest.mark.heavy
def test_run_with_a_silent_dask_port(case, addresses, tmp_path, capsys):
    address = addresses[case]
    rc = main(["run", str(REPO / "configs" / "demo.yaml"), "--out", str(tmp_path), "--dask", address])
    assert rc == 2
    _one_line(capsys, address, case)
    assert list(tmp_path.iterdir()) == []
