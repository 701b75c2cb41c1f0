"""``landcover map``: classify rasters with a saved model, one class map per input (or one map of
the single-band files or dates of one image), windows classified locally or on a Dask cluster."""

from __future__ import annotations

import argparse
import logging
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cli.console import show_progress
from pipeline.core.errors import InputError

if TYPE_CHECKING:
    from pipeline.inputs.raster import RasterStack

log = logging.getLogger(__name__)


def _dask_client(address: str | None) -> AbstractContextManager[Any]:
    """A ``distributed.Client`` connected to ``address`` (a context manager), or a null context."""
    from contextlib import nullcontext

    if not address:
        return nullcontext(None)
    try:
        from distributed import Client
    except ImportError as e:
        raise InputError(f"--dask needs the distributed package ({e})") from None
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise InputError(f"--dask {address}: cannot reach the Dask scheduler ({e})") from None


def expand_rasters(items: list[Path]) -> list[Path]:
    """``--raster`` arguments with glob patterns (``tiles/*.tif``) expanded in sorted order."""
    import glob

    out: list[Path] = []
    for it in items:
        if glob.has_magic(str(it)):
            hits = sorted(Path(p) for p in glob.glob(str(it)) if Path(p).is_file())
            if not hits:
                raise InputError(f"--raster {it}: no file matches")
            out += hits
        else:
            out.append(Path(it))
    return out


def map_inputs(paths: list[Path], n_model_bands: int, dates: list[str] | None) -> list[list[Path]]:
    """Group ``--raster`` files into the images to map: one stack, or one map per file.

    The files form one image when ``--dates`` is given, or when they are single-band files,
    as many as the model has bands (bands of one scene, as in a config's ``rasters.paths``);
    otherwise every file (a multi-band raster, a VRT) is its own scene with its own map.
    """
    import rasterio

    if dates is not None or len(paths) == 1:
        return [paths]
    counts = []
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: raster file not found")
        try:
            with rasterio.open(p) as ds:
                counts.append(ds.count)
        except rasterio.errors.RasterioIOError as e:
            raise InputError(f"{p}: not a readable raster ({str(e).splitlines()[0]})") from None
    if all(c == 1 for c in counts) and len(paths) == n_model_bands > 1:
        return [paths]
    return [[p] for p in paths]


def cmd_map(args: argparse.Namespace) -> int:
    from pipeline.inputs.class_table import ClassTable
    from pipeline.inputs.value_range import check_stack
    from pipeline.mapping.classify import check_map_size, classify_raster
    from pipeline.mapping.deliver import deliver_map
    from pipeline.mapping.model_inputs import open_for_model
    from pipeline.mapping.settings import DEFAULT_MAX_PIXELS, MIN_WINDOW_SIZE, MinimumMappingUnit
    from pipeline.models.registry import load_model

    if args.window_size < MIN_WINDOW_SIZE:
        raise InputError(f"--window-size {args.window_size}: must be at least {MIN_WINDOW_SIZE} pixels")
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: must be at least 1")
    if args.dask:  # a dead, silent or malformed address: one line within seconds, before any work
        from pipeline.cli.preflight import check_dask_scheduler

        check_dask_scheduler(args.dask, f"--dask {args.dask}")
    try:
        mmu = MinimumMappingUnit.parse(args.mmu) if args.mmu is not None else None
    except ValueError as e:
        raise InputError(f"--mmu {e}") from None

    model = load_model(args.model, device=args.device or "auto")
    names = args.band_names.split(",") if args.band_names else None
    dates = [d.strip() for d in args.dates.split(",")] if args.dates else None
    want = list(model.meta.band_names)
    groups = map_inputs(expand_rasters(args.raster), len(want), dates)
    out = Path(args.out)
    # "--out maps/" names a folder even before it exists (Path drops the slash: it wrote a GeoTIFF
    # called "maps").
    out_folder = out.is_dir() or str(args.out).endswith(("/", os.sep))
    if len(groups) > 1 or out_folder:
        # One map per input, named after it, in the folder --out (and --confidence).
        stems = [g[0].stem for g in groups]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise InputError(f"--raster: several inputs are named {dup[0]!r}; their maps would overwrite each other")
        if out.suffix.lower() in (".tif", ".tiff") and not out_folder:
            hint = ""
            if dates is None and any(":" in b for b in want):  # <date>:<band> names: a model of a date stack
                hint = (
                    f"; or, if they are the dates of one image (the model's bands are {want[0]}, ...), "
                    "stack them with --dates D1,D2,..."
                )
            raise InputError(f"--out {out}: {len(groups)} rasters give {len(groups)} maps; name a folder{hint}")
        if args.polygons is not None and args.polygons.suffix.lower() == ".gpkg" and not args.polygons.is_dir():
            raise InputError(
                f"--polygons {args.polygons}: {len(groups)} rasters give {len(groups)} maps; name a folder"
            )
        targets = [
            (
                g,
                out / f"{g[0].stem}.tif",
                Path(args.confidence) / f"{g[0].stem}_confidence.tif" if args.confidence else None,
                Path(args.polygons) / f"{g[0].stem}.gpkg" if args.polygons else None,
            )
            for g in groups
        ]
    else:
        polygons = args.polygons
        if polygons is not None and polygons.is_dir():
            polygons = polygons / f"{out.stem}.gpkg"
        elif polygons is not None and polygons.suffix.lower() != ".gpkg":
            raise InputError(
                f"--polygons {polygons}: polygons are written as a GeoPackage; name a .gpkg file or a folder"
            )
        targets = [(groups[0], out, args.confidence, polygons)]
    value_range = getattr(model.meta, "value_range", None)

    checked = bool(args.strict and value_range)
    max_pixels = args.max_pixels if args.max_pixels is not None else DEFAULT_MAX_PIXELS
    if max_pixels < 1:
        raise InputError(f"--max-pixels {max_pixels}: must be at least 1")

    def open_input(paths: list[Path], announce: bool = True) -> RasterStack:
        """One input opened as the model needs it (bands, grid, nodata, dates): checked and mapped
        alike; what differs from training is said once (``announce``); a raster larger than
        --max-pixels is refused before any pixel is read."""
        stack = open_for_model(
            paths,
            want,
            band_names=names,
            nodata=args.nodata,
            model_nodata=getattr(model.meta, "nodata", None),
            dates=dates,
            alignment=getattr(model.meta, "alignment", None),
            align_to=args.align_to,
            announce=announce,
        )
        try:
            check_map_size(stack, max_pixels, "--max-pixels")
        except InputError:
            stack.close()
            raise
        return stack

    if checked:  # every input checked before any map is written: a stop leaves none behind
        for paths, *_ in targets:
            with open_input(paths) as stack:
                problem = check_stack(stack, value_range)
            if problem:
                raise InputError(problem)
    with _dask_client(args.dask) as client:
        for paths, target, conf, polygons in targets:  # one input after the other: memory follows one window set
            with open_input(paths, announce=not checked) as stack:
                problem = None if args.strict else check_stack(stack, value_range)
                if problem:
                    log.warning("%s", problem)
                res = classify_raster(
                    model,
                    stack,
                    target,
                    confidence_path=conf,
                    window_size=args.window_size,
                    workers=args.workers,
                    progress=show_progress(args.no_progress),
                    client=client,
                    max_pixels=max_pixels,
                    max_pixels_key="--max-pixels",
                )
            where = f", windows on {len(res['workers'])} Dask worker(s)" if args.dask else ""
            print(f"wrote {res['path']} ({res['mpx_per_s']:.2f} Mpx/s{where})")
            if mmu is not None or polygons is not None:
                made = deliver_map(target, ClassTable.from_meta(model.meta), mmu, polygons, args.connectivity)
                if made["mmu"]:
                    r = made["mmu"]
                    share = r["changed_pixels"] / max(r["valid_pixels"], 1)
                    print(
                        f"wrote {r['path']} (clumps under {r['mmu_pixels']} px merged into their largest "
                        f"neighbour: {r['changed_pixels']} px, {share:.1%} of the map, changed class)"
                    )
                if made["polygons"]:
                    print(f"wrote {made['polygons']['path']} ({made['polygons']['polygons']} polygons)")
    return 0


def add_map_command(sub: Any) -> None:
    """Add ``landcover map`` to an argparse subparsers object."""
    p = sub.add_parser("map", help="classify rasters with a saved model (one map per input)")
    p.add_argument("--model", required=True, type=Path, help="saved model (models/<model>.skops or .pt of a run)")
    p.add_argument(
        "--raster",
        required=True,
        type=Path,
        nargs="+",
        help="rasters to map (multi-band files, VRTs or glob patterns such as 'tiles/*.tif': one map "
        "each), or the single-band files of one image, or with --dates one file per date",
    )
    p.add_argument(
        "--out",
        required=True,
        type=str,  # not Path: a trailing "/" (a folder) must survive
        help="the map (one input), or a folder for one <input stem>.tif per input (COGs, with "
        ".aux.xml/.qml/.clr sidecars naming the classes)",
    )
    p.add_argument(
        "--confidence", type=Path, help="also write the confidence raster here (a folder for several inputs)"
    )
    p.add_argument(
        "--mmu",
        metavar="N",
        help="minimum mapping unit: also write <out stem>_mmu.tif beside the map, where clumps smaller than N "
        "pixels (4, 4px) or than an area (0.5ha, 5000m2) are merged into their largest neighbour (GDAL's sieve)",
    )
    p.add_argument(
        "--polygons",
        type=Path,
        metavar="GPKG",
        help="also write the map (after --mmu when given) as polygons with class id, name and area, in the "
        "map's CRS (a GeoPackage; a folder for several inputs)",
    )
    p.add_argument(
        "--connectivity",
        type=int,
        choices=[4, 8],
        default=4,
        help="pixels of a clump touch by their sides (4) or also by their corners (8), for --mmu and --polygons",
    )
    p.add_argument(
        "--dates",
        help="comma-separated dates: the rasters are one file per date of one scene (single-band "
        "files too, unnamed bands taken in the model's order), stacked as in training (rasters.dates)",
    )
    p.add_argument("--band-names", help="comma-separated band names of the raster")
    p.add_argument(
        "--align-to",
        type=Path,
        metavar="RASTER",
        help="warp files on different grids onto this raster's grid (default: as in training, "
        "which is the finest band's grid unless the run set rasters.align_to)",
    )
    p.add_argument(
        "--nodata",
        type=float,
        help="nodata value of every band (default: the one the model was trained with, else the file's own)",
    )
    p.add_argument(
        "--window-size",
        type=int,
        default=512,
        help="pixels per side of the windows read and classified at a time (memory grows with its square)",
    )
    p.add_argument("--workers", type=int, default=2, help="windows classified in parallel")
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse rasters larger than this many pixels (default: 4000000000, as mapping.max_pixels; a damaged "
        "or hostile header can claim tens of gigapixels in a small file)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="device for deep models")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="classify the windows as tasks on this Dask cluster "
        "(scheduler address, e.g. tcp://10.0.0.5:8786); the workers must see the raster's path",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop (exit 2) instead of warning when the input's "
        "values or data type clearly differ from the model's training pixels",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar (shown only when stderr is a terminal)"
    )
    p.set_defaults(func=cmd_map)
