"""``landcover serve`` reads nothing outside its inbox through it: a symbolic link out of the
inbox, a ``.tif`` that is a VRT whose (raw or nested) source lies elsewhere, a VRT reading a URL
are failed scenes, one line each, nothing written, unless the operator passes
``--allow-outside-inbox``; rasters inside the inbox, VRTs over them included, are mapped."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from prefect_fixtures import REPO, prefect_api  # noqa: E402,F401
from test_serve import _model  # noqa: E402

from pipeline.core.errors import InputError  # noqa: E402
from pipeline.runner.inbox import check_inside_inbox  # noqa: E402

GRID = "<SRS>EPSG:32633</SRS><GeoTransform>500000,10,0,4000000,0,-10</GeoTransform>"


def _vrt_over(path: Path, source: str, bands: int = 3, relative: bool = False) -> Path:
    """A VRT (named .tif: GDAL goes by the content) of 80 x 60 px whose bands read ``source``."""
    rel = ' relativeToVRT="1"' if relative else ""
    body = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{b}"><Description>b{b}</Description><SimpleSource>'
        f"<SourceFilename{rel}>{source}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
        for b in range(1, bands + 1)
    )
    path.write_text(f'<VRTDataset rasterXSize="80" rasterYSize="60">{GRID}{body}</VRTDataset>')
    return path


def _raw_vrt(path: Path, target: Path) -> Path:
    """A VRT whose "raw" band maps the bytes of any file as pixels."""
    path.write_text(
        f'<VRTDataset rasterXSize="8" rasterYSize="4">{GRID}<VRTRasterBand dataType="Byte" band="1" '
        f'subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">{target}</SourceFilename>'
        "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>8</LineOffset></VRTRasterBand></VRTDataset>"
    )
    return path


@pytest.fixture
def inbox(tmp_path, synthetic_scene):
    scene, _ = synthetic_scene
    secret = tmp_path / "private" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the operator's private notes, never to be mapped\n" * 4)
    elsewhere = tmp_path / "private" / "scene.tif"
    shutil.copy(scene, elsewhere)
    ib = tmp_path / "inbox"
    ib.mkdir()
    shutil.copy(scene, ib / "good.tif")
    (ib / "sub").mkdir()
    shutil.copy(scene, ib / "sub" / "source.tif")
    _vrt_over(ib / "mosaic.tif", "sub/source.tif", relative=True)  # a VRT over a file inside: fine
    (ib / "link.tif").symlink_to(elsewhere)
    _raw_vrt(ib / "raw.tif", secret)
    _raw_vrt(ib / "sub" / "inner.vrt", secret)
    _vrt_over(ib / "nested.tif", "sub/inner.vrt", bands=1, relative=True)
    _vrt_over(ib / "remote.tif", "/vsicurl/http://127.0.0.1:9/scene.tif")
    return ib


def test_files_reading_outside_the_inbox_are_refused(inbox):
    check_inside_inbox(inbox / "good.tif", inbox)
    check_inside_inbox(inbox / "mosaic.tif", inbox)
    for name, why in [
        ("link.tif", f"resolves to {inbox.parent / 'private' / 'scene.tif'}, outside the inbox"),
        ("raw.tif", f"reads {inbox.parent / 'private' / 'secret.txt'}, outside the inbox"),
        ("nested.tif", f"reads {inbox.parent / 'private' / 'secret.txt'}, outside the inbox"),
        ("remote.tif", "reads /vsicurl/http://127.0.0.1:9/scene.tif, outside the inbox"),
    ]:
        with pytest.raises(InputError) as exc:
            check_inside_inbox(inbox / name, inbox)
        msg = str(exc.value)
        assert msg.startswith(f"{inbox / name}: {why}; ") and "--allow-outside-inbox" in msg, msg


@pytest.mark.prefect
def test_serve_maps_only_what_lies_inside_its_inbox(prefect_api, inbox, tmp_path, capsys):
    from pipeline.cli.main import main

    model = _model(tmp_path / "runs" / "dt.skops", ["b1", "b2", "b3"])
    base = ["serve", str(REPO / "configs" / "demo.yaml"), "--once", "--inbox", str(inbox), "--model", str(model)]
    base += ["--runs", str(tmp_path / "runs"), "--settle", "0", "--no-progress"]
    outbox = tmp_path / "out1"
    assert main([*base, "--outbox", str(outbox)]) == 3
    capsys.readouterr()
    for name in ("good", "mosaic"):
        (d,) = outbox.glob(f"{name}-*")
        assert (d / f"{d.name}.tif").is_file()
    for name in ("link", "raw", "nested", "remote"):
        (d,) = outbox.glob(f"{name}-*")
        error = json.loads((d / f"{d.name}.failed.json").read_text())["error"]
        assert f"{inbox / name}.tif: " in error and "outside the inbox" in error, error
        assert not list(d.glob("*.tif"))

    # the operator allows it: the link is followed (the raw and nested VRTs then fail as rasters
    # the model cannot map: one band where it needs three; the URL as a source that does not answer)
    outbox = tmp_path / "out2"
    main([*base, "--outbox", str(outbox), "--allow-outside-inbox"])
    (d,) = outbox.glob("link-*")
    assert (d / f"{d.name}.tif").is_file()
    for name in ("raw", "nested"):
        (d,) = outbox.glob(f"{name}-*")
        assert "outside the inbox" not in json.loads((d / f"{d.name}.failed.json").read_text())["error"]

    # and the size guard, from the command line
    outbox = tmp_path / "out3"
    assert main([*base, "--outbox", str(outbox), "--max-pixels", "4000"]) == 3
    (d,) = outbox.glob("good-*")
    error = json.loads((d / f"{d.name}.failed.json").read_text())["error"]
    assert "80 x 60 px" in error and "--max-pixels" in error, error
