"""Stage 3, ``map``: every scene classified with one saved model, window by window, and delivered
with what the config's ``outputs:`` section asks for (MMU map, polygons)."""

from __future__ import annotations

from typing import Any

from pipeline.core.atomic import write_json
from pipeline.models import registry
from pipeline.runner.context import RunContext


def stage_map(ctx: RunContext, model: str) -> dict:
    """Classify every scene with the saved model, one scene after the other: maps/<model>.tif and
    maps/<model>_confidence.tif for a single scene, maps/<scene>/<model>[_confidence].tif for several;
    with ``outputs.mmu`` also <model>_mmu.tif, with ``outputs.polygons`` <model>.gpkg, beside them."""
    from pipeline.inputs.class_table import ClassTable
    from pipeline.mapping.class_maps import class_map_files
    from pipeline.mapping.classify import classify_raster, dask_client_here
    from pipeline.mapping.deliver import deliver_map
    from pipeline.mapping.legends import confidence_sidecar_paths
    from pipeline.models.registry import load_model

    m = load_model(ctx.run_dir / "models" / f"{model}{registry.model_suffix(model)}", device=ctx.device)
    classes = ClassTable.from_meta(m.meta)
    opts = ctx.cfg.outputs
    outputs: list[str] = []
    per_scene: dict[str, dict] = {}
    pixels = seconds = 0.0

    # classify_raster shrinks the window for many bands (same map, bounded memory). On a Dask
    # worker (landcover run --dask) the windows become tasks across the cluster.
    with dask_client_here() as client:
        for sc in ctx.scenes():
            out, conf = ctx.map_path(model, sc.name), ctx.map_path(model, sc.name, "_confidence.tif")
            with ctx.open_stack(sc) as stack:
                res = classify_raster(
                    m,
                    stack,
                    ctx.path(out),
                    confidence_path=ctx.path(conf),
                    window_size=ctx.cfg.mapping.window_size,
                    workers=ctx.cfg.mapping.workers,
                    progress=ctx.progress,
                    client=client,
                    max_pixels=ctx.cfg.mapping.max_pixels,
                )
            made = deliver_map(
                ctx.path(out),
                classes,
                mmu=opts.minimum_mapping_unit(),
                polygons=ctx.path(ctx.map_path(model, sc.name, ".gpkg")) if opts.polygons else None,
                connectivity=opts.connectivity,
            )
            per_scene[sc.name] = {
                "map": out,
                "confidence": conf,
                "seconds": res["seconds"],
                "predict_mpx_per_s": res["mpx_per_s"],
                "mmu": _relative(ctx, made["mmu"]),
                "polygons": _relative(ctx, made["polygons"]),
                "final_map": _relative_path(ctx, made["final"]),
            }
            pixels += res["pixels"]
            seconds += res["seconds"]
            sidecars = [_relative_path(ctx, p) for p in class_map_files(ctx.path(out))]
            conf_sidecars = [_relative_path(ctx, p) for p in confidence_sidecar_paths(ctx.path(conf)).values()]
            outputs += [out, *sidecars, conf, *conf_sidecars, *(_relative_path(ctx, p) for p in made["files"])]
    rec: dict[str, Any] = {"predict_mpx_per_s": pixels / 1e6 / max(seconds, 1e-9), "map_seconds": seconds}
    if ctx.multi_scene:
        rec["scenes"] = per_scene
    else:
        only = next(iter(per_scene.values()))
        rec.update({k: only[k] for k in ("mmu", "polygons", "final_map")})
    write_json(ctx.path("maps", f"{model}.json"), rec)
    return {"outputs": [*outputs, f"maps/{model}.json"], **rec}


def _relative_path(ctx: RunContext, p: Any) -> str:
    """A path inside the run directory as the run-relative POSIX string stage records hold."""
    from pathlib import Path

    return Path(p).resolve().relative_to(ctx.run_dir.resolve()).as_posix()


def _relative(ctx: RunContext, record: dict | None) -> dict | None:
    """A record of :func:`~pipeline.mapping.deliver.deliver_map` with its paths made run-relative."""
    if record is None:
        return None
    return {k: _relative_path(ctx, v) if k in ("path", "source") else v for k, v in record.items()}
