"""The run's STAC catalog: ``stac/catalog.json`` with one Item per map (model x scene), written by
the report stage (its Items link to the report) when ``outputs.stac`` is on. Items and their
validation: :mod:`pipeline.mapping.stac`."""

from __future__ import annotations

from pathlib import Path

from pipeline.runner.context import RunContext
from pipeline.runner.failures import failed_models
from pipeline.runner.files import read_json

STAC_DIR = "stac"


def write_run_stac(ctx: RunContext) -> list[str]:
    """Write ``stac/`` for every map of every model that was mapped; returns the run-relative files."""
    from pipeline.inputs.class_table import ClassTable
    from pipeline.mapping.stac import MapFiles, MapLinks, map_item, sidecar_assets, write_run_catalog
    from pipeline.models import registry

    run = ctx.run_dir
    classes = ClassTable.of(ctx.class_ids, ctx.class_names, [c.color for c in ctx.cfg.classes])
    failed = failed_models(ctx)
    items = []
    for m in ctx.cfg.models.enabled():
        rec_path = run / "maps" / f"{m}.json"
        if m in failed or not rec_path.is_file():
            continue
        rec = read_json(rec_path)
        scenes = rec.get("scenes") or {ctx.scenes()[0].name: rec}
        for sc in ctx.scenes():
            srec = scenes.get(sc.name) or {}
            map_path = run / ctx.map_path(m, sc.name)
            if not map_path.is_file():
                continue
            conf = run / ctx.map_path(m, sc.name, "_confidence.tif")
            mmu = srec.get("mmu") or None
            poly = srec.get("polygons") or None
            mmu_map = run / mmu["path"] if mmu else None
            files = MapFiles(
                map=map_path,
                confidence=conf if conf.is_file() else None,
                mmu_map=mmu_map,
                mmu=mmu["mmu"] if mmu else None,
                polygons=run / poly["path"] if poly else None,
                extra=sidecar_assets(map_path, conf if conf.is_file() else None, mmu_map),
            )
            item_id = f"{m}-{sc.name}" if ctx.multi_scene else m
            links = MapLinks(
                report=run / "report.html",
                metrics=run / "metrics.json",
                model=run / "models" / f"{m}{registry.model_suffix(m)}",
            )
            item = map_item(
                item_id,
                files,
                classes,
                links,
                title=f"{m} land-cover map" + (f" of {sc.name}" if ctx.multi_scene else ""),
                description=f"Land-cover classes mapped by the {m} model of run {run.name}",
                properties={"landcover:model": m, "landcover:run": run.name, "landcover:scene": sc.name},
            )
            items.append((item, run / STAC_DIR / item_id / f"{item_id}.json"))
    files_written = write_run_catalog(
        run / STAC_DIR,
        run.name,
        f"Land-cover maps of run {run.name}",
        f"The maps of run {run.name} (config {ctx.cfg.name}), one item per model and scene",
        items,
    )
    return [Path(p).relative_to(run).as_posix() for p in files_written]
