"""Inputs that open but cannot be read: a damaged GeoTIFF, a VRT whose source is missing, a VRT
whose source is a network server that accepts connections and never answers. Each is one line
naming the file with GDAL's own cause and exit code 2, never a traceback nor a hang; and a
process blocked in a native call still stops on SIGTERM or a second Ctrl-C."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import write_raster
from rasterio.windows import Window

from pipeline.cli.main import main
from pipeline.core.errors import SourceUnavailableError, UnreadableInputError
from pipeline.inputs.raster import NETWORK_TIMEOUTS, RasterStack

BANDS = ["b1", "b2", "b3"]


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """A decision tree on three bands that records its training value range (so that mapping first
    samples the input's values, where a missing VRT source used to end in a traceback)."""
    from pipeline.inputs.value_range import training_value_range
    from pipeline.models.base import ModelMeta, TrainingData
    from pipeline.models.settings import DecisionTreeConfig
    from pipeline.models.trees import DecisionTreeModel

    rng = np.random.default_rng(0)
    x = rng.integers(100, 5000, (300, 3)).astype(np.float32)
    y = np.where(x[:, 0] > 2500, 1, 2)
    meta = ModelMeta("decision_tree", BANDS, [1, 2], ["a", "b"], ["#ff0000", "#0000ff"], 1)
    meta = dataclasses.replace(meta, value_range=training_value_range(x, ["uint16"] * 3))
    td = TrainingData(x[:, :, None, None], y, np.arange(300), np.zeros((300, 2)), BANDS)
    return DecisionTreeModel(DecisionTreeConfig(), meta, seed=0).fit(td).save(tmp_path / "tree.skops")


def _vrt(path: Path, source: str, size: int = 64) -> Path:
    bands = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><Description>{name}</Description><SimpleSource>'
        f"<SourceFilename>{source}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b, name in enumerate(BANDS, 1)
    )
    path.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>500000,10,0,4000000,0,-10</GeoTransform>{bands}</VRTDataset>"
    )
    return path


def _map(capsys, model: Path, raster: Path, out: Path) -> tuple[int, list[str]]:
    rc = main(["map", "--model", str(model), "--raster", str(raster), "--out", str(out), "--no-progress"])
    return rc, capsys.readouterr().err.strip().splitlines()


def test_a_damaged_geotiff_is_one_line_with_gdals_cause(tmp_path, model_path, capsys):
    rng = np.random.default_rng(1)
    good = tmp_path / "good.tif"
    write_raster(good, rng.integers(100, 5000, (3, 300, 300), dtype=np.uint16), descriptions=BANDS)
    # a tiled, compressed copy with damaged tiles: the header opens, some tiles do not decode
    tiled = tmp_path / "tiled.tif"
    with rasterio.open(good) as src:
        prof = {**src.profile, "tiled": True, "blockxsize": 64, "blockysize": 64, "compress": "deflate"}
        with rasterio.open(tiled, "w", **prof) as dst:
            dst.write(src.read())
            dst.descriptions = tuple(BANDS)
    with rasterio.open(tiled) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))  # where the tile's bytes start
    data = bytearray(tiled.read_bytes())
    data[offset : offset + 2000] = b"\xff" * 2000
    cut = tmp_path / "damaged.tif"
    cut.write_bytes(bytes(data))

    with RasterStack.open(cut) as stack, pytest.raises(UnreadableInputError) as exc:
        stack.read(Window(0, 0, 300, 300))
    assert str(cut) in str(exc.value) and "IReadBlock failed" in str(exc.value)  # GDAL's words, not "Read failed"

    rc, err = _map(capsys, model_path, cut, tmp_path / "m.tif")
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"landcover: error: {cut}: cannot read") and "TIFFReadEncodedTile" in err[0], err
    assert "damaged or incomplete" in err[0]
    assert not (tmp_path / "m.tif").exists()


def test_a_vrt_whose_source_is_missing_is_one_line(tmp_path, model_path, capsys):
    vrt = _vrt(tmp_path / "mosaic.vrt", str(tmp_path / "gone.tif"))
    rc, err = _map(capsys, model_path, vrt, tmp_path / "m.tif")
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"landcover: error: {vrt}: cannot read") and f"{tmp_path / 'gone.tif'}" in err[0], err
    assert "cannot be opened" in err[0]


@pytest.fixture
def silent_server():
    """``host:port`` of a server that accepts every connection and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{srv.getsockname()[1]}", held
    stop.set()
    srv.close()
    for c in held:
        c.close()


@pytest.mark.heavy
def test_a_network_source_that_never_answers_times_out_in_one_line(
    tmp_path, model_path, capsys, silent_server, monkeypatch
):
    address, held = silent_server
    vrt = _vrt(tmp_path / "remote.vrt", f"/vsicurl/http://{address}/scene.tif")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    with RasterStack.open(vrt) as stack, pytest.raises(SourceUnavailableError) as exc:
        stack.read(Window(0, 0, 8, 8))
    assert str(vrt) in str(exc.value) and "GDAL_HTTP_TIMEOUT = 1 s" in str(exc.value)
    assert held, "GDAL never connected to the server"
    rc, err = _map(capsys, model_path, vrt, tmp_path / "m.tif")
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"landcover: error: {vrt}: a network source failed"), err


def test_network_reads_get_timeouts_unless_the_environment_sets_them(tmp_path, monkeypatch):
    """Without GDAL_HTTP_TIMEOUT a server that accepts and never answers blocks a read for good:
    opening any stack gives GDAL the default timeouts, and leaves the user's own alone."""
    path = write_raster(tmp_path / "s.tif", np.ones((1, 4, 4), np.uint16))
    for key in NETWORK_TIMEOUTS:
        monkeypatch.setenv(key, "placeholder")  # so that monkeypatch restores the original state
        monkeypatch.delenv(key)
    monkeypatch.setenv("GDAL_HTTP_CONNECTTIMEOUT", "3")
    with RasterStack.open(path):
        pass
    assert os.environ["GDAL_HTTP_TIMEOUT"] == NETWORK_TIMEOUTS["GDAL_HTTP_TIMEOUT"]
    assert os.environ["GDAL_HTTP_CONNECTTIMEOUT"] == "3"


# A main thread stuck in native code: a second lock of a held pthread mutex (ctypes releases the
# GIL and the call never returns, whatever the signal), as a read of a server that never answers
# would be without a timeout. Python's own signal handlers never get to run there.
STUCK = """
import ctypes, sys
from pipeline.core import cancel
restore = cancel.install_signal_handlers()
libc = ctypes.CDLL(None)
mutex = ctypes.create_string_buffer(64)
libc.pthread_mutex_init(mutex, None)
libc.pthread_mutex_lock(mutex)
print("blocked", flush=True)
libc.pthread_mutex_lock(mutex)
"""


def _wait_until_in_futex(pid: int) -> None:
    """Until the process's main thread waits in the kernel (the mutex), not in the Python code
    before it, where a signal would be handled at once (wait channel from /proc)."""
    wchan = Path(f"/proc/{pid}/wchan")
    if not wchan.exists():
        pytest.skip("no /proc/PID/wchan here")
    for _ in range(600):
        if "futex" in wchan.read_text():
            return
        threading.Event().wait(0.05)
    pytest.skip(f"the main thread never waited in a futex (wait channel {wchan.read_text()!r})")


@pytest.mark.heavy
@pytest.mark.parametrize("signals, code", [([signal.SIGTERM], 143), ([signal.SIGINT, signal.SIGINT], 130)])
def test_a_process_blocked_in_native_code_still_stops(signals, code):
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "blocked"
        _wait_until_in_futex(proc.pid)
        for s in signals:
            proc.send_signal(s)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{[s.name for s in signals]} did not stop a process blocked in native code")
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == code, err
    assert err.strip().startswith("landcover: interrupted") and "stopping now" in err, err
