"""A disk that fills while one file is written: for tests where no small file system can be mounted.

``python tests/disk_fills.py NAME ARGS...`` runs ``landcover ARGS...`` in which every write of a
file called NAME under a temporary name (``.<stem>.*<suffix>``, or NAME in a hidden temporary
folder: how every output is written before it is renamed into place) fails with ENOSPC part of the
way through: Python's own file writes (``io.open``: pathlib, zipfile, matplotlib, pystac) after
their first ``ROOM`` bytes, and GDAL's vector writes (``pyogrio.write_dataframe``) after the layer
is in the file. Other files are written as usual. Torch writes its files in C++: not covered.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from pathlib import Path
from typing import Any

ROOM = 4096


class Filling:
    """A file opened for writing that takes ``room`` more bytes (characters) and then fails as a full disk does."""

    def __init__(self, f: Any, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data: Any) -> int:
        if len(data) > self._room:
            self._f.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> Filling:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def fill_while_writing(name: str, room: int = ROOM, setattr: Any = setattr) -> None:
    """Make every later write of ``name`` (under a temporary name) fail for lack of space
    (``setattr``: pytest's ``monkeypatch.setattr`` to undo it after a test)."""
    import pyogrio

    stem, suffix = Path(name).stem, Path(name).suffix

    def targeted(file: Any) -> bool:
        if not isinstance(file, (str, bytes, os.PathLike)):
            return False
        p = Path(os.fsdecode(file))
        hidden = p.name.startswith(f".{stem}.") and p.name.endswith(suffix)
        return hidden or (p.name == name and p.parent.name.startswith("."))

    real_open, real_write = io.open, pyogrio.write_dataframe

    def open_(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        f = real_open(file, mode, *a, **k)
        return Filling(f, room) if targeted(file) and any(c in mode for c in "wax") else f

    def write_dataframe(df: Any, path: Any, *a: Any, **k: Any) -> None:
        real_write(df, path, *a, **k)  # GDAL wrote the layer; committing it finds the disk full
        if targeted(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    setattr(io, "open", open_)
    setattr(builtins, "open", open_)
    setattr(pyogrio, "write_dataframe", write_dataframe)


if __name__ == "__main__":
    fill_while_writing(sys.argv[1])
    from pipeline.cli.main import main

    sys.exit(main(sys.argv[2:]))
