"""The command line itself: version, help on every option, option conflicts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import rasterio

from pipeline import __version__
from pipeline.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"landcover {__version__}"


def _subparsers(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in ap._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_has_help_and_shows_its_default():
    subs = _subparsers(build_parser())
    assert {"run", "demo", "map", "serve", "assess", "assess-design", "bench"} <= set(subs)
    for name, p in subs.items():
        text = p.format_help()
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help, f"{name} {a.option_strings or a.dest}: no help"
            if a.option_strings and a.default not in (None, False, []):
                assert f"(default: {a.default})" in " ".join(text.split()), f"{name} {a.option_strings}"
    assert "CONFIG" in subs["run"].format_usage()
    for opt in ("--model", "--out", "--window-size", "--workers"):
        assert opt in subs["map"].format_help()


def test_serve_once_with_cron_is_rejected(capsys):
    assert main(["serve", str(REPO / "configs" / "demo.yaml"), "--once", "--cron", "0 3 * * *"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--once" in err[0] and "--cron" in err[0]


def test_engine_local_rejects_dask(capsys, tmp_path):
    assert main(["demo", "--engine", "local", "--dask", "tcp://127.0.0.1:1", "--out", str(tmp_path / "r")]) == 2
    assert "--dask" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_console_hides_routine_prefect_states():
    import logging

    from pipeline.cli.console import _hide_routine_states

    def rec(name, msg):
        return logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, None)

    assert not _hide_routine_states(rec("prefect.task_runs", "Finished in state Completed()"))
    assert not _hide_routine_states(rec("prefect.flow_runs", "Finished in state Completed()"))
    assert _hide_routine_states(rec("prefect.task_runs", "Finished in state Failed('boom')"))
    assert _hide_routine_states(rec("landcover", "Finished in state Completed()"))


def test_map_out_with_a_trailing_slash_is_a_folder(tmp_path):
    """`--out maps/` names a folder even before it exists: the map goes in as <input stem>.tif
    (argparse's Path dropped the slash and a GeoTIFF called "maps" was written)."""
    from conftest import run_cli
    from test_saved_models_stay_loadable import DATA

    folder = tmp_path / "maps"
    proc = run_cli(
        "map",
        "--model",
        DATA / "decision_tree.skops",
        "--raster",
        DATA / "scene.tif",
        "--out",
        f"{folder}/",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert folder.is_dir() and (folder / "scene.tif").is_file()
    with rasterio.open(folder / "scene.tif") as m, rasterio.open(DATA / "scene.tif") as src:
        assert (m.width, m.height, m.crs) == (src.width, src.height, src.crs)
