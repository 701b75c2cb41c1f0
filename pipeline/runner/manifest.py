"""manifest.json: what a run was made of (config hash, seed, device, git commit, package
versions, input-file hashes, stage times, failed models), written by both runners at the end."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from pathlib import Path

from pipeline.core.atomic import write_json
from pipeline.runner.context import RunContext
from pipeline.runner.failures import failed_models


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in (
        "landcover-pipeline",
        "numpy",
        "rasterio",
        "geopandas",
        "scikit-learn",
        "torch",
        "pandas",
        "pydantic",
        "prefect",
        "prefect-dask",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        import rasterio

        out["gdal"] = rasterio.__gdal_version__
    except ImportError:
        pass
    return out


def write_manifest(ctx: RunContext, started: str, stages: list[dict], extra: dict | None = None) -> Path:
    return write_json(
        ctx.path("manifest.json"),
        {
            "run_id": ctx.run_dir.name,
            "config_hash": ctx.cfg.config_hash(),
            "seed": ctx.cfg.seed,
            "device": ctx.device,
            "git_commit": _git_commit(),
            "packages": package_versions(),
            "inputs": ctx.hash_inputs(),
            "started": started,
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "stages": [{"name": s["name"], "seconds": round(s["seconds"], 3), "cached": s["cached"]} for s in stages],
            "failed_models": failed_models(ctx),
            **(extra or {}),
        },
    )
