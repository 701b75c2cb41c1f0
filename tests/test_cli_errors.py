"""Bad input of every kind is one line on stderr and exit code 2, never a traceback, and
names cannot put files outside the output folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from tiny_project import make_project  # noqa: E402

from pipeline.cli.main import main  # noqa: E402


def _edit(cfg: Path, **top) -> Path:
    d = yaml.safe_load(cfg.read_text())
    d.update(top)
    cfg.write_text(yaml.safe_dump(d, sort_keys=False))
    return cfg


_MOUNTS: list[Path] = []


@pytest.fixture(autouse=True)
def _unmount():
    yield
    while _MOUNTS:
        subprocess.run(["umount", "-l", str(_MOUNTS.pop())], capture_output=True)


def _ro_folder(tmp_path: Path) -> Path:
    """A read-only folder even for root (who ignores permission bits): a read-only tmpfs."""
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    _MOUNTS.append(d)
    return d


# (case id, how to build the argv from (config path, tmp_path), text the one line must contain)
CASES = [
    ("non_utf8_config", lambda c, t: ["run", str(_latin1(c))], "not UTF-8"),
    ("duplicate_yaml_key", lambda c, t: ["run", str(_dup_key(c))], "duplicate key 'seed'"),
    ("seed_negative", lambda c, t: ["run", str(c), "--set", "seed=-1"], "seed"),
    ("seed_too_big", lambda c, t: ["run", str(c), "--set", f"seed={2**32}"], "seed"),
    ("set_bad_yaml", lambda c, t: ["run", str(c), "--set", "key=["], "--set 'key=['"),
    ("classes_differ_by_case", lambda c, t: ["run", str(_case_classes(c))], "'water' and 'Water' differ only by case"),
    ("run_id_300_chars", lambda c, t: ["run", str(c), "--run-id", "r" * 300], "300 characters"),
    ("run_id_with_slash", lambda c, t: ["run", str(c), "--run-id", "a/b"], "--run-id"),
    ("run_id_dotdot", lambda c, t: ["run", str(c), "--run-id", ".."], "--run-id"),
    ("run_id_absolute", lambda c, t: ["run", str(c), "--run-id", str(t / "elsewhere")], "--run-id"),
    ("resume_traversal", lambda c, t: ["run", str(c), "--resume", "../../x"], "--resume"),
    ("name_traversal", lambda c, t: ["run", str(_edit(c, name="../../escaped"))], "name"),
    ("name_absolute", lambda c, t: ["run", str(_edit(c, name=str(t / "abs")))], "name"),
    (
        "name_dotdot",
        lambda c, t: ["run", str(_edit(c, name=".."))],
        "name: run name '..' must not start with '.' nor start or end with spaces",
    ),
    # a --set typo is not in the file: the line says where it came from
    (
        "set_unknown_key",
        lambda c, t: ["run", str(c), "--set", "split.blok_size=3"],
        "unknown key 'split.blok_size' (from --set split.blok_size=3)",
    ),
    ("set_even_patch", lambda c, t: ["run", str(c), "--set", "patch.size=4"], "got 4 (from --set patch.size=4)"),
    ("name_too_long", lambda c, t: ["run", str(_edit(c, name="n" * 101))], "101 characters"),
    (
        "map_window_size_0",
        lambda c, t: [
            "map",
            "--model",
            str(t / "m.skops"),
            "--raster",
            str(t / "p" / "scene.tif"),
            "--out",
            str(t / "m.tif"),
            "--window-size",
            "0",
        ],
        "--window-size 0",
    ),
    ("run_read_only_out", lambda c, t: ["run", str(c), "--out", str(_ro_folder(t))], "Read-only file system"),
]


def _latin1(c: Path) -> Path:
    p = c.with_name("latin1.yaml")
    p.write_bytes(c.read_bytes().replace(b"name: tiny", "name: tiny-d\u00e9mo".encode("latin-1")))
    return p


def _dup_key(c: Path) -> Path:
    p = c.with_name("dup.yaml")
    p.write_text(c.read_text() + "seed: 3\n")
    return p


def _case_classes(c: Path) -> Path:
    d = yaml.safe_load(c.read_text())
    d["classes"][1]["name"] = "Water"
    return _edit(c, classes=d["classes"])


@pytest.mark.parametrize("case,argv,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(tmp_path, capfd, case, argv, expect):
    cfg = make_project(tmp_path / "p")
    out = tmp_path / "runs"
    args = argv(cfg, tmp_path)
    if args[0] == "run" and "--out" not in args:
        args += ["--out", str(out)]
    code = main(args + ["--no-progress"])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("landcover: error: ") and expect in err[0], err
    # nothing was written anywhere: not in --out, not next to it, not in the config's folder
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "abs").exists()
    assert not list(tmp_path.parent.glob("escaped*")) and not list(tmp_path.glob("escaped*"))
    assert {p.name for p in (tmp_path / "p").iterdir()} <= {
        "config.yaml",
        "dup.yaml",
        "labels.tif",
        "latin1.yaml",
        "scene.tif",
    }


def test_debug_still_shows_the_traceback(tmp_path, capfd):
    cfg = make_project(tmp_path / "p")
    with pytest.raises(Exception, match="300 characters"):
        main(["--debug", "run", str(cfg), "--run-id", "r" * 300, "--out", str(tmp_path / "o")])


def test_case_sensitive_duplicate_and_unique_names_are_fine(tmp_path):
    from pipeline.config import load_config

    cfg, _ = load_config(make_project(tmp_path / "p", name="caf\u00e9 run-1"))
    assert cfg.name == "caf\u00e9 run-1"
    assert [c.name for c in cfg.classes] == ["water", "forest", "urban"]
