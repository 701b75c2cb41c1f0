"""What ``landcover serve`` may read through its inbox: files inside it, nothing else.

Whoever can drop a file into the inbox decides what is read. A symbolic link, or a ``.tif``
that is really a GDAL VRT (GDAL picks the format from the content, not the name), can point
anywhere this account can read: a VRT "raw" band over ``/etc/passwd`` maps that file's bytes as
pixels, and a ``/vsicurl/`` source makes the server fetch a URL. :func:`check_inside_inbox`
follows every file GDAL lists for an input (a VRT's sources, recursively through nested VRTs)
and refuses the input when one of them lies outside the inbox, unless the operator allows it
(``serve --allow-outside-inbox``). Rasters given explicitly (``serve --raster PATH``) are the
operator's own choice and are not checked.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import InputError

#: Nested VRTs followed at most this deep (a VRT that names itself, directly or not, stops here).
MAX_DEPTH = 8


def _is_remote(name: str) -> bool:
    """GDAL virtual file systems and URLs: never inside an inbox folder."""
    return name.startswith("/vsi") or "://" in name


def _files(path: Path) -> list[str]:
    """The files GDAL reads for ``path`` (itself, a VRT's sources, sidecars), or [] when it is not a
    raster GDAL opens (the mapping reports that later, in its own words)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as ds:
            return list(ds.files)
    except (RasterioIOError, OSError):
        return []


def check_inside_inbox(entry: str | Path, inbox: str | Path) -> None:
    """An :class:`InputError` naming ``entry`` (a file of the inbox) when it, or any file GDAL would
    read for it, resolves outside ``inbox``: a symbolic link out, a VRT source (or a nested VRT's
    source) elsewhere, a network source."""
    root = Path(inbox).resolve()
    entry = Path(entry)
    hint = (
        f"serve maps only files inside its inbox {root} (a link or a VRT source elsewhere exposes any file "
        "this account can read); move the data into the inbox or pass --allow-outside-inbox"
    )
    todo, seen = [(entry.resolve(), 0)], set()
    while todo:
        path, depth = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if not path.is_relative_to(root):
            what = "resolves to" if depth == 0 else "reads"
            raise InputError(f"{entry}: {what} {path}, outside the inbox; {hint}")
        if depth >= MAX_DEPTH:
            raise InputError(f"{entry}: VRTs nested more than {MAX_DEPTH} deep; {hint}")
        for name in _files(path):
            if _is_remote(name):
                raise InputError(f"{entry}: reads {name}, outside the inbox; {hint}")
            child = Path(name) if Path(name).is_absolute() else path.parent / name
            if child.resolve() != path:
                todo.append((child.resolve(), depth + 1))
