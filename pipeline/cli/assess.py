"""``landcover assess-design`` and ``landcover assess``: the command-line side of
:mod:`pipeline.evaluation.reference_sample` (argument parsing and console output; the estimators live there)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.core.atomic import write_json
from pipeline.core.errors import InputError
from pipeline.evaluation.reference_sample import (
    ALLOCATIONS,
    assess_error_matrix,
    assess_sample,
    design_sample,
    parse_class_names,
    write_sample,
)


def _cmd_design(args: argparse.Namespace) -> int:
    gdf = design_sample(
        args.map,
        args.n,
        args.allocation,
        args.min_per_class,
        args.seed,
        parse_class_names(args.class_names),
        args.nodata,
    )
    out = write_sample(gdf, args.out)
    per = gdf.groupby("map_class_name").size().to_dict()
    print(f"wrote {len(gdf)} points to {out} ({', '.join(f'{k}: {v}' for k, v in per.items())})")
    return 0


def _cmd_assess(args: argparse.Namespace) -> int:
    if args.error_matrix or args.areas:
        if not (args.error_matrix and args.areas):
            raise InputError("--error-matrix and --areas go together")
        if args.map or args.sample:
            raise InputError("give either MAP.tif SAMPLE.gpkg --field FIELD, or --error-matrix and --areas")
        result = assess_error_matrix(args.error_matrix, args.areas)
    else:
        if not (args.map and args.sample and args.field):
            raise InputError("assess needs MAP.tif SAMPLE.gpkg --field FIELD (or --error-matrix and --areas)")
        result = assess_sample(
            args.map, args.sample, args.field, args.layer, parse_class_names(args.class_names), args.nodata
        )
    write_json(args.json, result)
    oa, ci = result["overall_accuracy"], result["overall_accuracy_ci95"]
    oa_s = "n/a" if oa is None else f"{oa:.3f}" + ("" if ci is None else f" ± {ci:.3f}")
    print(f"overall accuracy {oa_s}; wrote {args.json}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``assess-design`` and ``assess`` to an argparse subparsers object.

    Each subparser sets ``func``: a callable taking the parsed namespace and
    returning an exit code. :class:`~pipeline.core.errors.InputError` propagates.
    """
    d = subparsers.add_parser(
        "assess-design",
        help="draw a stratified random sample from a class map for labelling",
        description="Stratified random sample of pixel centres, the map classes being the strata. "
        "Allocation: proportional (to mapped area), equal, or olofsson (default: at least --min-per-class "
        "points per class, the rest proportional to area; Olofsson et al. 2014). No class gets more "
        "points than it has pixels; every class needs at least 2.",
    )
    d.add_argument("map", type=Path, metavar="MAP.tif", help="class map (its class names are read from it)")
    d.add_argument("--n", type=int, required=True, help="total number of points")
    d.add_argument("--out", type=Path, required=True, metavar="SAMPLE.gpkg", help="sample points to write")
    d.add_argument("--allocation", choices=ALLOCATIONS, default="olofsson", help="points per class")
    d.add_argument("--min-per-class", type=int, default=50, help="floor per class for olofsson")
    d.add_argument("--seed", type=int, default=0, help="random seed (same seed, same sample)")
    d.add_argument(
        "--class-names",
        default=None,
        metavar="ID=NAME,...",
        help="names of the map's class ids (default: read from the map)",
    )
    d.add_argument("--nodata", type=int, default=255, help="map value that is no class")
    d.set_defaults(func=_cmd_design)

    a = subparsers.add_parser(
        "assess",
        help="area-adjusted accuracy and class areas (Olofsson et al. 2014)",
        description="Stratified estimates of overall, user's and producer's accuracy and class areas with "
        "95% confidence intervals, from a labelled sample and its map, or from an error matrix of sample "
        "counts and the mapped areas.",
    )
    a.add_argument("map", type=Path, nargs="?", metavar="MAP.tif", help="class map (its class names are read from it)")
    a.add_argument("sample", type=Path, nargs="?", metavar="SAMPLE.gpkg", help="labelled sample points")
    a.add_argument("--field", help="column of SAMPLE with the reference class (name or id)")
    a.add_argument("--layer", default=None, help="layer of SAMPLE")
    a.add_argument(
        "--error-matrix",
        type=Path,
        metavar="COUNTS.csv",
        help="sample counts: first column map class names, header reference class names",
    )
    a.add_argument("--areas", type=Path, metavar="AREAS.csv", help="columns class,area_ha")
    a.add_argument("--json", type=Path, required=True, metavar="OUT.json", help="estimates to write")
    a.add_argument(
        "--class-names",
        default=None,
        metavar="ID=NAME,...",
        help="names of the map's class ids (default: read from the map)",
    )
    a.add_argument("--nodata", type=int, default=255, help="map value that is no class")
    a.set_defaults(func=_cmd_assess)
