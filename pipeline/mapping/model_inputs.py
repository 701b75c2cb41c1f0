"""A raster opened for a saved model: its bands matched to the model's, its files put on one grid
as they were in training, and the model's nodata, with a warning wherever the input is not like
the training image (another pixel size, a nodata value replaced, bands or dates taken in order).

Single-band files whose names are not the model's band names are matched to its bands by their
file names where they can be (:func:`_files_by_name`): a shell glob sorts ``S2_B8A.tif`` after
``S2_B12.tif``, and taking such files in the order given would silently feed one band's values to
another band's place in the model.

``landcover map``, ``serve`` and :func:`~pipeline.mapping.classify.classify_raster` on paths all
open their inputs through :func:`open_for_model`, so a model maps its own training files again
without options and pixel for pixel as the run did.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.text import short_list
from pipeline.inputs.raster import RasterStack, alignment_message, check_nodata_fits

__all__ = ["open_for_model", "pixel_size_problem"]

log = logging.getLogger(__name__)

#: Relative difference of pixel sizes taken as "another pixel size" (a reprojected copy's
#: 29.99 m against 30 m is the same ground; a half-resolution copy is not).
PIXEL_SIZE_TOLERANCE = 1e-3


def open_for_model(
    paths: Sequence[str | Path] | str | Path,
    want: list[str],
    band_names: list[str] | None = None,
    nodata: float | None = None,
    model_nodata: list[float | None] | None = None,
    dates: list[str] | None = None,
    alignment: dict[str, Any] | None = None,
    align_to: str | Path | None = None,
    announce: bool = True,
) -> RasterStack:
    """Open a raster for a model (``want``: its band names, ``model_nodata``, ``alignment``: its
    :class:`~pipeline.models.base.ModelMeta` fields).

    * Several single-band files are put in the model's band order by their names first
      (:func:`_files_by_name`); then bands are matched as :func:`_match_bands` does (with
      ``dates`` as :func:`_open_dates_for_model`).
    * Files on different grids are put on one grid as in training (``alignment``'s rule: the
      finest file's, the first date's, or the training's ``rasters.align_to``, found again among
      the files or at its path); ``align_to`` (``--align-to``) names another grid.
    * Nodata is the model's per band (where it had one) unless ``nodata`` overrides every band;
      a band the model has no nodata for keeps the file's own. An InputError names ``nodata`` if a
      band's data type cannot hold it (:func:`~pipeline.inputs.raster.check_nodata_fits`).

    With ``announce``, what differs from training is logged as warnings: files warped onto one
    grid, a pixel size unlike the model's, the model's nodata replacing the file's own.
    """
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if dates is None and band_names is None:
        # before the grid: the training's reference file is found again at its position in the model's order
        files, band_names = _files_by_name(files, want, alignment, announce)
    grid_path, key = _grid_for(files, alignment, align_to, announce)
    stack = _match_bands(files, want, band_names, nodata, dates, grid_path, key, announce)
    try:
        if announce and stack.alignment.get("warped"):
            log.warning("%s", alignment_message(stack.alignment))
        problem = pixel_size_problem(stack, alignment)
        if problem and announce:
            log.warning("%s", problem)
        if nodata is not None:
            check_nodata_fits(stack, nodata, "--nodata")
    except BaseException:
        stack.close()
        raise
    if nodata is None and model_nodata is not None and len(model_nodata) == stack.count:
        merged = [m if m is not None else f for m, f in zip(model_nodata, stack.nodata)]
        differ = [
            n
            for n, m, f in zip(stack.band_names, merged, stack.nodata)
            if f is not None and m is not None and not (m == f or (np.isnan(m) and np.isnan(f)))
        ]
        if differ and announce:
            files_nd = sorted(
                {f"{f:g}" for n, f in zip(stack.band_names, stack.nodata) if n in differ and f is not None}
            )
            log.warning(
                "%s: declares nodata %s, but the model was trained with nodata %s: using the model's for band(s) %s "
                "(pixels of value %s are classified); --nodata overrides",
                stack.paths[0],
                ", ".join(files_nd),
                ", ".join(sorted({f"{m:g}" for m in merged if m is not None})),
                short_list(differ),
                ", ".join(files_nd),
            )
        stack.nodata = merged
    return stack


def _grid_for(
    files: list[Path], alignment: dict[str, Any] | None, align_to: str | Path | None, announce: bool
) -> tuple[Path | None, str]:
    """The raster whose grid the files go on (None: the default rule, as in training unless the
    training named ``rasters.align_to``) and the name of the setting it came from."""
    if align_to is not None:
        return Path(align_to), "--align-to"
    if not alignment or alignment.get("rule") != "align_to":
        return None, "--align-to"
    idx = alignment.get("reference_index")
    if idx is not None and 0 <= int(idx) < len(files) and len(files) > 1:
        return files[int(idx)], "--align-to"  # the same band file as in training, at its position
    ref = Path(str(alignment.get("reference")))
    if ref.exists():
        return ref, "the model's rasters.align_to"
    if announce and len(files) > 1:
        log.warning(
            "the model's bands were aligned to the grid of %s (rasters.align_to), which is not here; "
            "aligning %s to the finest band's grid instead (--align-to names another)",
            ref,
            files[0],
        )
    return None, "--align-to"


def pixel_size_problem(stack: RasterStack, alignment: dict[str, Any] | None) -> str | None:
    """A sentence when ``stack``'s pixel size differs from the model's training grid (None when
    it matches, or the model predates the record)."""
    if not alignment or not alignment.get("res"):
        return None
    want = [float(v) for v in alignment["res"]]
    have = [float(v) for v in stack.grid.res]
    if all(math.isclose(h, w, rel_tol=PIXEL_SIZE_TOLERANCE) for h, w in zip(have, want)):
        return None
    unit_have, unit_want = _unit(stack.grid.crs), _unit(alignment.get("crs"))
    return (
        f"{stack.paths[0]}: pixel size {have[0]:g} x {have[1]:g}{unit_have} differs from the "
        f"{want[0]:g} x {want[1]:g}{unit_want} pixels the model was trained on: the same patch covers "
        "other ground and the classes' spectra mix differently; resample the input to the training "
        "pixel size (e.g. gdalwarp -tr) for a map as accurate as the run's"
    )


def _unit(crs: Any) -> str:
    """ " m", " degree", ... for a CRS (a rasterio CRS or a string), "" when unknown."""
    if not crs:
        return ""
    try:
        from pyproj import CRS

        name = CRS.from_user_input(crs if isinstance(crs, str) else crs.to_wkt()).axis_info[0].unit_name
    except Exception:  # noqa: BLE001 - a unit is a nicety of the message
        return ""
    return {"metre": " m"}.get(name, f" {name}")


def _open(files: list[Path], grid: Path | None, key: str, **kw: Any) -> RasterStack:
    """RasterStack.open without its warning (open_for_model logs what differs, once)."""
    return RasterStack.open(files, align_to=grid, key=key, warn=False, **kw)


def _match_bands(
    files: list[Path],
    want: list[str],
    band_names: list[str] | None,
    nodata: float | None,
    dates: list[str] | None,
    grid: Path | None,
    key: str,
    announce: bool,
) -> RasterStack:
    """Open a raster so that its bands line up with a model's ``want`` band names.

    With ``dates`` the files are one file per date (see :class:`RasterStack` and
    :func:`_open_dates_for_model`).

    Bands match by name (a raster with more bands gives up the ones the model does not use);
    a raster whose bands carry no names of their own (``band_N`` or file stems) is taken in
    order when the count matches, with a warning. ``band_names`` names the raster's bands
    explicitly. Anything else is an :class:`InputError` naming the file.
    """
    if dates is not None:
        return _open_dates_for_model(files, want, band_names, dates, nodata, grid, key, announce)
    stack = _open(files, grid, key, band_names=band_names, nodata=nodata)
    names = stack.band_names
    if names == want:
        return stack
    stack.close()
    if all(w in names for w in want):
        return _open(files, grid, key, band_names=band_names, bands=list(want), nodata=nodata)
    generic = band_names is None and _unnamed(names, files)
    if stack.count != len(want) and (generic or not set(want) & set(names)):
        raise InputError(f"{files[0]}: has {stack.count} bands, the model needs {len(want)} ({short_list(want)})")
    if generic:
        if announce and len(files) > 1:  # every file with the band it stands for: a mix-up shows
            log.warning(
                "%d band files whose names do not name the model's bands: taken in the order given, %s; "
                "give them in the model's order or name them by band",
                len(files),
                ", ".join(f"{p.name} as {w}" for p, w in zip(files, want)),
            )
        elif announce:
            log.warning("%s: bands carry no names; assuming they are %s in this order", files[0], short_list(want))
        return _open(files, grid, key, band_names=list(want), nodata=nodata)
    raise InputError(
        f"{files[0]}: band names {short_list(names)} do not match the model's {short_list(want)}; "
        "pass --band-names if they are the same bands"
    )


def _files_by_name(
    files: list[Path], want: list[str], alignment: dict[str, Any] | None, announce: bool
) -> tuple[list[Path], list[str] | None]:
    """Single-band files put in the model's band order by their names: ``(files, band_names)``,
    one file per band of ``want`` (files no band names are left out) and ``want`` as their names;
    ``(files, None)`` unchanged where the names do not identify the bands (or need not).

    A file is a band's when its stem equals the stem of the training file of that band (the
    model's ``alignment["files"]``, one per band), else when the band's name is a whole word of
    the stem (words split at anything but letters and digits: ``B01`` is in ``S2_B01`` and
    ``T33UUP_B01_60m``; ``B1`` is not in ``B10``). Files named exactly as the model's bands need
    nothing (:func:`_match_bands` selects them by name), nor does a model of dates. An
    :class:`InputError` names the files when a band is named by two files, or one file names two
    bands: taken in order, one of them would stand for a band it is not.
    """
    stems = [p.stem for p in files]
    if len(files) < 2 or all(w in stems for w in want) or any(":" in w for w in want):
        return files, None
    trained = [Path(str(f)).stem for f in (alignment or {}).get("files") or []]
    tried = [(trained, lambda key, stem: key == stem)] if len(trained) == len(want) else []
    tried.append((want, lambda key, stem: _words_in(key, stem)))
    for keys, hit in tried:
        found = [[p for p in files if hit(k, p.stem)] for k in keys]
        twice = [(w, ps) for w, ps in zip(want, found) if len(ps) > 1]
        if not twice and not all(found):
            continue  # a band no file names: these keys do not identify the files
        chosen = [ps[0] if ps else None for ps in found]
        shared = [p for p in dict.fromkeys(chosen) if p is not None and chosen.count(p) > 1]
        if twice or shared:
            what = [f"{w} in {' and '.join(p.name for p in ps)}" for w, ps in twice]
            what += [f"{p.name} for {' and '.join(w for w, c in zip(want, chosen) if c == p)}" for p in shared]
            if not all(found):
                what.append(f"no file for {', '.join(w for w, ps in zip(want, found) if not ps)}")
            raise InputError(
                f"--raster: the file names name the model's bands ambiguously ({'; '.join(what)}); "
                "give one file per band, or the files in the model's order with --band-names"
            )
        picked = [p for p in chosen if p is not None]
        if announce:
            left = [p.name for p in files if p not in picked]
            log.info(
                "band files matched to the model's bands by their names: %s%s",
                ", ".join(f"{p.name} as {w}" for p, w in zip(picked, want)),
                f" (not used: {', '.join(left)})" if left else "",
            )
        return picked, list(want)
    return files, None


def _words_in(name: str, stem: str) -> bool:
    """Whether ``name``'s words (letters and digits, any case) are consecutive words of ``stem``."""
    words, within = _words(name), _words(stem)
    n = len(words)
    return n > 0 and any(within[i : i + n] == words for i in range(len(within) - n + 1))


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", text.lower()) if w]


def _unnamed(names: list[str], files: list[Path]) -> bool:
    """Band names a file gives when its bands carry none: ``band_N``, or the stems of single-band files."""
    stems = {p.stem for p in files}
    return all(n.startswith("band_") or n in stems for n in names)


def _open_dates_for_model(
    files: list[Path],
    want: list[str],
    band_names: list[str] | None,
    dates: list[str],
    nodata: float | None,
    grid: Path | None,
    key: str,
    announce: bool,
) -> RasterStack:
    """One file per date, stacked date after date as in training (``rasters.dates``).

    The model's bands are ``<date>:<band>``. A date's bands match by name; bands without names
    of their own (``band_N``: unnamed single-band files, or multi-band files without
    descriptions) are taken in the model's order when each file has as many as the model has per
    date. Dates other than the model's (another year of the same calendar, say) are taken in
    order, with a warning, when there are as many.
    """
    model_dates = list(dict.fromkeys(w.split(":", 1)[0] for w in want if ":" in w))
    per_file = list(dict.fromkeys(w.split(":", 1)[-1] for w in want))  # a date's bands, in the model's order
    if not model_dates:
        raise InputError(
            f"--dates: the model was not trained on a stack of dates (its bands are {short_list(want)}); "
            "leave --dates out"
        )
    if len(dates) != len(model_dates) or len(per_file) * len(model_dates) != len(want):
        raise InputError(
            f"--dates: {len(dates)} date(s) given; the model was trained on {len(model_dates)} "
            f"({short_list(model_dates)}) of {len(per_file)} band(s) each"
        )
    stack = _open(files, grid, key, band_names=band_names, nodata=nodata, dates=dates)
    own = list(dict.fromkeys(n.split(":", 1)[-1] for n in stack.band_names))
    names = [f"{d}:{b}" for d in model_dates for b in own]  # the file's bands under the model's dates
    if names != want and all(b in own for b in per_file):
        stack.close()
        stack = _open(files, grid, key, band_names=band_names, nodata=nodata, bands=per_file, dates=dates)
    elif names != want and band_names is None and _unnamed(own, files) and len(own) == len(per_file):
        stack.close()
        if announce:
            log.warning(
                "%s: bands carry no names; assuming each date's are %s in this order", files[0], short_list(per_file)
            )
        stack = _open(files, grid, key, band_names=per_file, nodata=nodata, dates=dates)
    got = [n.split(":", 1)[-1] for n in stack.band_names]
    if got != [w.split(":", 1)[-1] for w in want]:
        stack.close()
        raise InputError(
            f"{files[0]}: bands {short_list(own)} of each date do not give the model's {short_list(per_file)}; "
            "check --band-names"
        )
    if dates != model_dates:
        if announce:
            log.warning(
                "--dates %s differ from the model's %s: taken in that order",
                short_list(dates),
                short_list(model_dates),
            )
        stack.band_names = list(want)
    return stack
