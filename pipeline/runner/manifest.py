"""manifest.json: what a run was made of (config hash, seed, device, git commit, package
versions, input-file hashes, stage times, failed models), written by both runners at the end."""

from __future__ import annotations

import datetime as dt
import json
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


def devices_used(ctx: RunContext) -> dict[str, str]:
    """The device each trained model actually ran on (``fit_info["device"]`` of ``models/<m>.json``;
    models that record none, the classical ones, ran on the CPU)."""
    out = {}
    for m in ctx.cfg.models.enabled():
        record = ctx.run_dir / "models" / f"{m}.json"
        try:
            info = json.loads(record.read_text()).get("fit_info") or {}
        except (OSError, ValueError, AttributeError):
            continue  # not trained (failed, or not yet)
        out[m] = str(info.get("device") or "cpu")
    return out


def reuse_summary(stages: list[dict], seconds: float) -> str:
    """The line both runners end with: how many stages were reused (from this run directory or the
    stage store) rather than computed, and the run's seconds."""
    n_cached = sum(bool(s["cached"]) for s in stages)
    return f"finished: {n_cached} of {len(stages)} stages reused, {seconds:.1f} s"


def write_manifest(ctx: RunContext, started: str, stages: list[dict], extra: dict | None = None) -> Path:
    """Write ``manifest.json``. Both runners write it once before the report (which shows it) and
    again at the end (with the report stage's time)."""
    used = devices_used(ctx)
    return write_json(
        ctx.path("manifest.json"),
        {
            "run_id": ctx.run_dir.name,
            "config_hash": ctx.cfg.config_hash(),
            "seed": ctx.cfg.seed,
            "device_requested": ctx.device,
            # the device the models ran on ("cpu", "cuda:0", or several joined when they differ)
            "device": ", ".join(sorted(set(used.values()))) or None,
            "device_by_model": used,
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
