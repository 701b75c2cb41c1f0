"""Stage 3, ``map``: every scene classified with one saved model, window by window."""

from __future__ import annotations

from typing import Any

from pipeline.core.atomic import write_json
from pipeline.models import registry
from pipeline.runner.context import RunContext


def stage_map(ctx: RunContext, model: str) -> dict:
    """Classify every scene with the saved model, one scene after the other: maps/<model>.tif and
    maps/<model>_confidence.tif for a single scene, maps/<scene>/<model>[_confidence].tif for several."""
    from pipeline.inputs.class_table import sidecar_paths
    from pipeline.mapping.classify import classify_raster, dask_client_here
    from pipeline.models.registry import load_model

    m = load_model(ctx.run_dir / "models" / f"{model}{registry.model_suffix(model)}", device=ctx.device)
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
                )
            per_scene[sc.name] = {
                "map": out,
                "confidence": conf,
                "seconds": res["seconds"],
                "predict_mpx_per_s": res["mpx_per_s"],
            }
            pixels += res["pixels"]
            seconds += res["seconds"]
            sidecars = [p.relative_to(ctx.run_dir).as_posix() for p in sidecar_paths(ctx.path(out)).values()]
            outputs += [out, *sidecars, conf]
    rec: dict[str, Any] = {"predict_mpx_per_s": pixels / 1e6 / max(seconds, 1e-9), "map_seconds": seconds}
    if ctx.multi_scene:
        rec["scenes"] = per_scene
    write_json(ctx.path("maps", f"{model}.json"), rec)
    return {"outputs": [*outputs, f"maps/{model}.json"], **rec}
