"""What a finished class map is delivered with, in one place for ``landcover map``, a run's map
stage and ``serve``: the map after a minimum mapping unit (:mod:`pipeline.mapping.mmu`), written
beside it as ``<stem>_mmu.tif``, and the map (after the MMU when given) as polygons
(:mod:`pipeline.mapping.polygons`)."""

from __future__ import annotations

from pathlib import Path

from pipeline.inputs.class_table import ClassTable
from pipeline.mapping.class_maps import class_map_files, remove_class_map
from pipeline.mapping.settings import MinimumMappingUnit


def deliver_map(
    map_path: str | Path,
    classes: ClassTable,
    mmu: MinimumMappingUnit | None = None,
    polygons: str | Path | None = None,
    connectivity: int = 4,
) -> dict:
    """Sieve and/or polygonize the class map at ``map_path``.

    Returns ``{"final": the map that was delivered (the MMU map when given, else the map),
    "mmu": record of :func:`~pipeline.mapping.mmu.sieve_class_map` or None, "polygons": record of
    :func:`~pipeline.mapping.polygons.write_polygons` or None, "files": every file written}``.
    On failure nothing of what this call wrote stays.
    """
    from pipeline.mapping.mmu import mmu_map_path, sieve_class_map
    from pipeline.mapping.polygons import write_polygons

    map_path = Path(map_path)
    out: dict = {"final": str(map_path), "mmu": None, "polygons": None, "files": []}
    mmu_path = mmu_map_path(map_path) if mmu is not None else None
    try:
        if mmu is not None and mmu_path is not None:
            out["mmu"] = sieve_class_map(map_path, mmu_path, classes, mmu, connectivity)
            out["final"] = str(mmu_path)
            out["files"] += [mmu_path, *class_map_files(mmu_path)]
        if polygons is not None:
            out["polygons"] = write_polygons(out["final"], polygons, classes, connectivity)
            out["files"].append(Path(polygons))
    except BaseException:
        if mmu_path is not None:
            remove_class_map(mmu_path)
        raise
    return out
