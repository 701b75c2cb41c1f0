"""The pipeline as plain stage functions over a run directory.

Each stage reads files of the run directory, writes its outputs atomically and
returns a small JSON-able record. A stage also writes ``stages/<stage>.json``
holding the fingerprint of its inputs (config hash, input-file hashes, the
fingerprints of the stages it depends on); a rerun or ``--resume`` skips a stage
whose fingerprint and outputs are unchanged. Prefect flows (``flows/``) wrap
exactly these functions; :func:`run_pipeline` runs them in order without Prefect.

Run directory layout: see README "Run directory".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_path, file_sha256, write_json, write_text
from pipeline.cache import cached_stage, execute_stage, run_stage, stage_key  # noqa: F401 - public here too
from pipeline.config import RunConfig, dump_config
from pipeline.errors import InputError, OutOfSpaceError
from pipeline.models import registry
from pipeline.sample_data import resolve

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- helpers
def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def write_geoparquet(df: pd.DataFrame, path: Path, crs: Any) -> Path:
    """``df`` as GeoParquet: its columns plus a point ``geometry`` from ``x``/``y`` in ``crs``
    (readable by geopandas with the CRS, and by pandas as a plain table)."""
    import geopandas as gpd

    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["x"], df["y"]), crs=crs)
    with atomic_path(path) as tmp:
        gdf.to_parquet(tmp, index=False)
    return path


# ----------------------------------------------------------------------------- context
@dataclass
class RunContext:
    """Everything a stage needs: the validated config and where things are."""

    cfg: RunConfig
    run_dir: Path
    base_dir: Path  # relative paths in the config resolve against this
    device: str = "auto"
    progress: bool = True
    inputs: dict[str, dict] = field(default_factory=dict)  # path -> {"bytes", "sha256"}

    @property
    def class_ids(self) -> list[int]:
        return [c.id for c in self.cfg.classes]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.cfg.classes]

    def raster_paths(self) -> list[Path]:
        return [resolve(p, self.base_dir) for p in self.cfg.rasters.paths]

    def label_path(self) -> Path:
        return resolve(self.cfg.labels.path, self.base_dir)

    def path(self, *parts: str) -> Path:
        p = self.run_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def open_stack(self, drop: list[str] | None = None):
        """The image as the run uses it: the config's band selection, less the bands that
        ``prepare`` dropped as empty (``rasters.drop_empty_bands``; listed in labels.json)."""
        from pipeline.raster import RasterStack

        r = self.cfg.rasters
        if drop is None:
            lab = self.run_dir / "labels.json"
            drop = (read_json(lab).get("dropped_bands") or {}) if lab.exists() else []
        stack = RasterStack.open(self.raster_paths(), r.band_names, r.bands, r.nodata)
        if not drop:
            return stack
        keep = [n for n in stack.band_names if n not in drop]
        stack.close()
        return RasterStack.open(self.raster_paths(), r.band_names, keep, r.nodata)

    def to_ref(self) -> dict:
        """A small picklable description (for tasks in other processes); see :meth:`from_ref`."""
        return {"run_dir": str(Path(self.run_dir).resolve()), "base_dir": str(Path(self.base_dir).resolve()),
                "device": self.device, "progress": self.progress, "inputs": self.hash_inputs()}

    @classmethod
    def from_ref(cls, ref: dict) -> "RunContext":
        """Rebuild the context from the run directory's config.yaml (in any process)."""
        import yaml

        from pipeline.config import parse_config

        run_dir = Path(ref["run_dir"])
        raw = yaml.safe_load((run_dir / "config.yaml").read_text())
        cfg = parse_config(raw, str(run_dir / "config.yaml"))
        ctx = cls(cfg=cfg, run_dir=run_dir, base_dir=Path(ref["base_dir"]), device=ref["device"],
                  progress=ref["progress"])
        ctx.inputs = dict(ref.get("inputs") or {})
        return ctx

    def hash_inputs(self) -> dict[str, dict]:
        """Sizes and SHA-256 of every input file (the label file's sidecars included)."""
        if self.inputs:
            return self.inputs
        paths = list(self.raster_paths())
        for p in paths:
            if not p.exists():
                raise InputError(f"{p}: raster file not found")
        lp = self.label_path()
        if not lp.exists():
            raise InputError(f"{lp}: label file not found")
        paths.append(lp)
        if lp.suffix.lower() == ".shp":
            paths += sorted(p for p in lp.parent.glob(lp.stem + ".*") if p != lp and p.suffix.lower() in
                            {".dbf", ".shx", ".prj", ".cpg"})
        for p in paths:
            if not p.exists():
                raise InputError(f"{p}: file not found")
            self.inputs[str(p)] = {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        return self.inputs


# ----------------------------------------------------------------------------- failed models
FAILED_DIR = "failed"  # failed/<model>.json: {"stage", "reason"} of a model whose stage raised


def one_line_reason(exc: BaseException, limit: int = 300) -> str:
    """``ExceptionType: first line of the message``, short enough for a console line."""
    text = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def record_failure(ctx: RunContext, stage: str, model: str, exc: BaseException) -> dict:
    """Record that ``model`` failed in ``stage``; the run goes on with the other models."""
    rec = {"stage": stage, "reason": one_line_reason(exc)}
    write_json(ctx.path(FAILED_DIR, f"{model}.json"), rec)
    log.error("model %s failed in stage %s: %s (the other models go on)", model, stage, rec["reason"])
    log.debug("model %s: %s failure", model, stage, exc_info=exc)  # the traceback, for run.log with --debug
    return rec


def clear_failure(ctx: RunContext, model: str) -> None:
    """Forget an earlier failure of ``model`` (before it is tried again)."""
    (ctx.run_dir / FAILED_DIR / f"{model}.json").unlink(missing_ok=True)


def failed_models(ctx: RunContext) -> dict[str, dict]:
    """``{model: {"stage", "reason"}}`` for every enabled model that failed in this run."""
    out = {}
    for m in ctx.cfg.models.enabled():
        f = ctx.run_dir / FAILED_DIR / f"{m}.json"
        if f.exists():
            out[m] = read_json(f)
    return out


# ----------------------------------------------------------------------------- stages
class _Sampler:
    """Decides, from the labelled pixels ingestion found, whether dense-label sampling is on and
    thins classes on a lattice before the split (see :mod:`pipeline.sampling`); keeps the record."""

    def __init__(self, cfg: RunConfig, stack) -> None:
        from pipeline.patches import storage_dtype

        self.cfg = cfg
        dt, _ = storage_dtype([str(d) for d in stack.dtypes], list(stack.nodata))
        self.bytes_per_sample = stack.count * cfg.patch.size ** 2 * dt.itemsize
        self.active = False
        self.record: dict[str, Any] = {"mode": cfg.sampling.mode, "active": False}

    def thin(self, rows: np.ndarray, cols: np.ndarray, class_ids: np.ndarray) -> np.ndarray | None:
        from pipeline.sampling import decide, thin_mask, thinning_strides

        sc = self.cfg.sampling
        self.active, reason = decide(sc, len(rows), self.bytes_per_sample)
        ids, counts = np.unique(class_ids, return_counts=True)
        name = {c.id: c.name for c in self.cfg.classes}
        self.record.update(active=self.active, reason=reason, max_per_class=sc.max_per_class,
                           labelled_per_class={name[int(i)]: int(n) for i, n in zip(ids, counts)})
        if not self.active:
            return None
        strides = thinning_strides({int(i): int(n) for i, n in zip(ids, counts)}, sc.max_per_class)
        self.record["thinning_stride"] = {name[c]: s for c, s in strides.items()}
        if all(s == 1 for s in strides.values()):
            return None
        keep = thin_mask(rows, cols, class_ids, strides)
        self.record["thinned_per_class"] = {name[int(i)]: int(np.sum(keep & (class_ids == i))) for i in ids}
        return keep


def stage_prepare(ctx: RunContext) -> dict:
    """Ingest labels, tile patches, build the spatial split. Writes samples.parquet, patches.npy,
    labels.json, split.json, splits.gpkg and split_map.png."""
    from pipeline.labels import EmptyBandsError, ingest_labels
    from pipeline.patches import extract_patches
    from pipeline.split import make_splits, plot_split_map, write_splits_gpkg

    cfg = ctx.cfg
    dropped_bands: dict[str, str] = {}

    def ingest(stack):
        sampler = _Sampler(cfg, stack)
        samples, report = ingest_labels(cfg.labels, ctx.label_path(), cfg.classes, stack,
                                        window_size=max(cfg.mapping.window_size, 1024),
                                        on_unknown=cfg.labels.on_unknown, progress=ctx.progress,
                                        thin=sampler.thin, on_empty_class=cfg.labels.on_empty_class)
        return sampler, samples, report

    from pipeline.areas import check_area_crs

    try:
        with ctx.open_stack(drop=[]) as stack:
            check_area_crs(stack.grid.crs, stack.paths[0])  # class areas must be computable: say so now
            sampler, samples, report = ingest(stack)
    except EmptyBandsError as e:
        if not cfg.rasters.drop_empty_bands:
            raise
        dropped_bands = e.why
        log.warning("dropped %d band(s) without data (rasters.drop_empty_bands): %s", len(dropped_bands),
                    "; ".join(f"{b}: {w}" for b, w in dropped_bands.items()))
        with ctx.open_stack(drop=list(dropped_bands)) as stack:
            sampler, samples, report = ingest(stack)
    for w in report.warnings():
        log.warning(w)
    with ctx.open_stack(drop=list(dropped_bands)) as stack:
        samples, split_cfg = _predefined_inputs(ctx, samples)
        result = make_splits(samples, split_cfg, cfg.patch.size, stack.grid.res, cfg.seed, crs=stack.grid.crs)
        if sampler.active:
            from pipeline.sampling import apply_sampling, console_line

            samples, result, sampling = apply_sampling(samples, result, cfg.sampling, split_cfg, cfg.patch.size,
                                                       stack.grid.res, cfg.seed, ctx.class_names, sampler.record)
            log.warning(console_line(sampling))
        else:
            sampling = sampler.record
        samples = samples.assign(split=result.split, block=result.block.astype(np.int64),
                                 fold=result.fold.astype(np.int64))
        extract_patches(stack, samples, cfg.patch.size, ctx.path("patches.npy"),
                        window_size=cfg.mapping.window_size, progress=ctx.progress)
        crs = stack.grid.crs
        band_names = stack.band_names
        band_nodata = [None if v is None or not np.isfinite(v) else float(v) for v in stack.nodata]
    write_geoparquet(samples, ctx.path("samples.parquet"), crs)
    folds = [{k: getattr(f, k).tolist() for k in ("train", "validation", "test")} for f in result.folds]
    write_json(ctx.path("folds.json"), folds)
    write_json(ctx.path("labels.json"), {**report.to_dict(), "band_names": band_names, "sampling": sampling,
                                         "dropped_bands": dropped_bands, "band_nodata": band_nodata})
    write_json(ctx.path("split.json"), result.report)
    write_splits_gpkg(result, samples, ctx.path("splits.gpkg"), crs)
    plot_split_map(samples, result, ctx.path("split_map.png"))
    return {"outputs": ["samples.parquet", "patches.npy", "patches.json", "labels.json", "split.json", "folds.json",
                        "splits.gpkg", "split_map.png"],
            "n_samples": len(samples), "band_names": band_names}


def _predefined_inputs(ctx: RunContext, samples: pd.DataFrame):
    """For ``split.strategy: predefined``: the label file's split column on the samples, and
    ``split.files`` with CSV lists expanded relative to the config's folder."""
    from pipeline.config import SplitFiles
    from pipeline.split_predefined import attach_label_column, expand_split_files

    sc = ctx.cfg.split
    if sc.strategy != "predefined":
        return samples, sc
    if sc.files is not None:
        return samples, sc.model_copy(update={"files": SplitFiles(**expand_split_files(sc.files, ctx.base_dir))})
    if sc.column not in samples.columns:
        samples = attach_label_column(samples, ctx.label_path(), ctx.cfg.labels, sc.column)
    return samples, sc


def _training_data(ctx: RunContext):
    from pipeline.models.base import TrainingData
    from pipeline.patches import open_patches

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet")
    labels = read_json(ctx.run_dir / "labels.json")
    data = TrainingData(open_patches(ctx.run_dir / "patches.npy"), samples["class_id"].to_numpy(np.int64),
                        samples["group"].to_numpy(np.int64), samples[["x", "y"]].to_numpy(np.float64),
                        labels["band_names"])
    return samples, data


def _meta(ctx: RunContext, model: str, band_names: list[str]):
    from pipeline.models.base import ModelMeta

    c = ctx.cfg.classes
    nodata = read_json(ctx.run_dir / "labels.json").get("band_nodata")
    return ModelMeta(model=model, band_names=list(band_names), class_ids=[x.id for x in c],
                     class_names=[x.name for x in c], class_colors=[x.color for x in c],
                     patch_size=ctx.cfg.patch.size, nodata=nodata)


def _fit(ctx: RunContext, model: str, data, fold, meta, what: str = ""):
    """Fit one model on one fold; ``what`` names the fit on its progress bar (e.g. "random-split fit")."""
    from pipeline.models import build_model

    settings = getattr(ctx.cfg.models, model)
    m = build_model(model, settings, meta, seed=ctx.cfg.seed, device=ctx.device)
    if hasattr(m, "progress"):
        m.progress = ctx.progress  # per-epoch bars of the deep models follow --no-progress
        m.progress_desc = f"train {model}" + (f" ({what})" if what else "")
    val = data.subset(fold.validation) if len(fold.validation) else None
    t0 = time.perf_counter()
    m.fit(data.subset(fold.train), val)
    return m, time.perf_counter() - t0


def dropped_classes(model: Any, meta: Any) -> dict[str, str]:
    """``{class name: why}`` for the classes a fitted model left out (``fit_info['dropped_classes']``)."""
    info = getattr(model, "fit_info", {}) or {}
    why = {str(k): v for k, v in (info.get("dropped_reason") or {}).items()}
    names = dict(zip(meta.class_ids, meta.class_names))
    return {names.get(int(c), str(c)): why.get(str(c), "too few training samples") for c in info.get("dropped_classes") or []}


def stage_train(ctx: RunContext, model: str) -> dict:
    """Fit ``model`` on every fold of the spatial split, predict each fold's test samples, and
    (unless disabled) refit on a random pixel split for the inflation contrast.

    Writes models/<model>.<pt|pkl>, models/<model>.json, eval/<model>.parquet and, for deep
    models, curves/<model>.json and .png.
    """
    from pipeline.split import Fold, random_split

    samples, data = _training_data(ctx)
    meta = _meta(ctx, model, data.band_names)
    folds = [Fold(*(np.asarray(f[k], dtype=np.int64) for k in ("train", "validation", "test")))
             for f in read_json(ctx.run_dir / "folds.json")]
    rows = []
    fit_seconds = 0.0
    final = None
    for i, fold in enumerate(folds):
        m, secs = _fit(ctx, model, data, fold, meta, f"spatial fold {i + 1}/{len(folds)}" if len(folds) > 1 else "")
        fit_seconds += secs
        pred, conf = m.predict_patches(data.subset(fold.test).patches)
        rows.append(pd.DataFrame({"sample": fold.test, "fold": i, "block": samples["block"].to_numpy()[fold.test],
                                  "y_true": data.y[fold.test], "y_pred": pred, "confidence": conf}))
        if i == 0:
            final = m  # the model that maps the scene: fit on fold 0's training blocks
    evald = pd.concat(rows, ignore_index=True)
    record: dict[str, Any] = {"fit_seconds": fit_seconds / len(folds), "folds": len(folds),
                              "fit_info": getattr(final, "fit_info", {})}
    dropped = dropped_classes(final, meta)
    if dropped:
        record["dropped_classes"] = dropped
        log.warning("%s left out class(es) it could not learn: %s", model,
                    "; ".join(f"{n} ({why})" for n, why in dropped.items()))
    if registry.get(model).deep:
        record["epochs_run"] = final.fit_info.get("epochs_run")
        record["best_epoch"] = final.fit_info.get("best_epoch")
        from pipeline.models.deep import save_learning_curves

        save_learning_curves(final.history, ctx.path("curves", f"{model}.json"), ctx.path("curves", f"{model}.png"))
    if ctx.cfg.split.random_contrast and ctx.cfg.split.strategy != "random":
        rfold = random_split(samples, ctx.cfg.split.fractions, ctx.cfg.seed)
        rm, _ = _fit(ctx, model, data, rfold, meta, "random-split fit, for the contrast")
        rpred, _ = rm.predict_patches(data.subset(rfold.test).patches)
        record["overall_accuracy_random"] = float(np.mean(rpred == data.y[rfold.test]))
    suffix = registry.model_suffix(model)
    model_path = ctx.path("models", f"{model}{suffix}")
    final.save(model_path)
    write_parquet(evald, ctx.path("eval", f"{model}.parquet"))
    write_json(ctx.path("models", f"{model}.json"), record)
    outs = [f"models/{model}{suffix}", f"models/{model}.json", f"eval/{model}.parquet"]
    return {"outputs": outs, **{k: v for k, v in record.items() if k != "fit_info"}}


def stage_map(ctx: RunContext, model: str) -> dict:
    """Classify the whole raster with the saved model: maps/<model>.tif and maps/<model>_confidence.tif."""
    from pipeline.class_table import sidecar_paths
    from pipeline.mapping import classify_raster, dask_client_here
    from pipeline.models import load_model
    from pipeline.patches import window_for_bands

    m = load_model(ctx.run_dir / "models" / f"{model}{registry.model_suffix(model)}", device=ctx.device)
    # Many bands: smaller windows (same map, bounded memory). On a Dask worker (landcover run
    # --dask) the windows become tasks across the cluster.
    with ctx.open_stack() as stack, dask_client_here() as client:
        res = classify_raster(m, stack, ctx.path("maps", f"{model}.tif"),
                              confidence_path=ctx.path("maps", f"{model}_confidence.tif"),
                              window_size=window_for_bands(ctx.cfg.mapping.window_size, stack.count, m.halo),
                              workers=ctx.cfg.mapping.workers, progress=ctx.progress, client=client)
    rec = {"predict_mpx_per_s": res["mpx_per_s"], "map_seconds": res["seconds"]}
    write_json(ctx.path("maps", f"{model}.json"), rec)
    sidecars = [p.relative_to(ctx.run_dir).as_posix() for p in sidecar_paths(ctx.path("maps", f"{model}.tif")).values()]
    return {"outputs": [f"maps/{model}.tif", *sidecars, f"maps/{model}_confidence.tif", f"maps/{model}.json"], **rec}


def _assess_model(ctx: RunContext, m: str) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """Metrics of one model from its test predictions and its map: (metrics, y_true, y_pred, train record)."""
    from pipeline.accuracy import assess_model, confidence_summary

    ids, names = ctx.class_ids, ctx.class_names
    ev = pd.read_parquet(ctx.run_dir / "eval" / f"{m}.parquet").sort_values(["fold", "sample"], kind="stable")
    rec = read_json(ctx.run_dir / "models" / f"{m}.json")
    maprec = read_json(ctx.run_dir / "maps" / f"{m}.json")
    y, p = ev["y_true"].to_numpy(), ev["y_pred"].to_numpy()
    res = assess_model(y, p, ev["block"].to_numpy(), ids, names, map_path=ctx.run_dir / "maps" / f"{m}.tif",
                       seed=ctx.cfg.seed)
    res["fit_seconds"] = rec["fit_seconds"]
    res["predict_mpx_per_s"] = maprec["predict_mpx_per_s"]
    for k in ("epochs_run", "best_epoch"):
        if k in rec:
            res[k] = rec[k]
    res["fit_info"] = rec.get("fit_info", {})
    res["dropped_classes"] = rec.get("dropped_classes", {})
    if "confidence" in ev:
        res["confidence"] = confidence_summary(ev["confidence"].to_numpy(), y == p)
    return res, y, p, rec


def _reference_check(ctx: RunContext, models: list[str]) -> dict:
    """Per-polygon accuracy over all models and the polygons every model contradicts (pipeline.polygons)."""
    from pipeline.patches import open_patches
    from pipeline.polygons import reference_check

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet")
    evals = {m: pd.read_parquet(ctx.run_dir / "eval" / f"{m}.parquet") for m in models}
    return reference_check(samples, evals, dict(zip(ctx.class_ids, ctx.class_names)),
                           open_patches(ctx.run_dir / "patches.npy"), read_json(ctx.run_dir / "labels.json")["band_names"])


def _evidence(ctx: RunContext) -> dict:
    """metrics.json "evidence": can the (pooled) test set support a ranking? (pipeline.evidence)"""
    from pipeline.evidence import assess_evidence, summarise_test_set

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet", columns=["class_id", "block", "group"])
    test = np.unique(np.concatenate([np.asarray(f["test"], dtype=np.int64)
                                     for f in read_json(ctx.run_dir / "folds.json")] or [np.empty(0, np.int64)]))
    t = samples.iloc[test]
    summary = summarise_test_set(t["class_id"].to_numpy(), t["block"].to_numpy(), t["group"].to_numpy(),
                               ctx.class_ids, ctx.class_names)
    empty = list(read_json(ctx.run_dir / "labels.json").get("classes_without_labels") or {})
    ev = assess_evidence(summary, read_json(ctx.run_dir / "split.json"), skip_classes=empty)
    if not ev["conclusive"]:
        log.warning("evaluation inconclusive: %s", "; ".join(ev["reasons"]))
    if ev["leakage"]:
        log.warning("accuracy inflated by spatial leakage: %s", "; ".join(ev["leakage_reasons"]))
    return ev


def stage_assess(ctx: RunContext) -> dict:
    """Combine every model's test predictions into metrics.json."""
    from pipeline.accuracy import pairwise_mcnemar

    cfg = ctx.cfg
    models: dict[str, Any] = {}
    contrast: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    y_ref = None
    failed = failed_models(ctx)
    for m in cfg.models.enabled():
        if m in failed:
            continue
        try:
            res, y, p, rec = _assess_model(ctx, m)
        except Exception as e:  # noqa: BLE001 - one model's failure must not sink the others
            failed[m] = record_failure(ctx, "assess", m, e)
            continue
        models[m] = res
        preds[m] = p
        y_ref = y
        if "overall_accuracy_random" in rec:
            oa = res["overall_accuracy"]
            contrast[m] = {"overall_accuracy_random": rec["overall_accuracy_random"], "overall_accuracy_spatial": oa,
                           "gap": rec["overall_accuracy_random"] - oa}
    metrics = {
        "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in cfg.classes],
        "models": models,
        "split": read_json(ctx.run_dir / "split.json"),
        "random_split_contrast": contrast,
        "pairwise": pairwise_mcnemar(y_ref, preds) if len(preds) > 1 else [],
        "labels": read_json(ctx.run_dir / "labels.json"),
        "failed_models": failed,
        "polygons": _reference_check(ctx, list(models)),
        "evidence": _evidence(ctx),
    }
    write_json(ctx.path("metrics.json"), metrics)
    return {"outputs": ["metrics.json"]}


def stage_report(ctx: RunContext) -> dict:
    from pipeline.report import write_report

    html, md = write_report(ctx.run_dir)
    return {"outputs": [html.name, md.name]}


# ----------------------------------------------------------------------------- run driver
def new_run_id(cfg: RunConfig) -> str:
    return f"{cfg.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{cfg.config_hash()[:6]}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("landcover-pipeline", "numpy", "rasterio", "geopandas", "scikit-learn", "torch", "pandas",
                 "pydantic", "prefect", "prefect-dask"):
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


def init_run_dir(cfg: RunConfig, base_dir: Path, out: Path | None = None, run_id: str | None = None,
                 resume: bool = False, device: str | None = None, progress: bool = True) -> RunContext:
    """Create (or, with ``resume``, reopen) the run directory and write config.yaml."""
    from pipeline.config import check_dir_name

    root = Path(out) if out is not None else Path(cfg.output_dir)
    if run_id is not None:
        try:
            check_dir_name(run_id, "run id")
        except ValueError as e:
            raise InputError(f"{'--resume' if resume else '--run-id'}: {e}") from None
    if resume:
        if run_id is None:
            raise InputError("--resume needs a run id")
        run_dir = root / run_id
        if not (run_dir / "config.yaml").exists():
            raise InputError(f"--resume {run_id}: no run directory {run_dir}")
        old = (run_dir / "config.yaml").read_text()
        if old != dump_config(cfg):
            raise InputError(f"--resume {run_id}: the configuration differs from the one in {run_dir}/config.yaml; "
                             "start a new run instead")
    else:
        run_dir = root / (run_id or new_run_id(cfg))
        if run_dir.exists() and any(run_dir.iterdir()):
            raise InputError(f"{run_dir}: run directory exists already; use --resume to continue it")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", dump_config(cfg))
    except OSError as e:  # read-only or missing output folder, disk full: one line naming the folder
        raise InputError(f"{e.filename or run_dir}: cannot write the run directory ({e.strerror or e})") from None
    ctx = RunContext(cfg=cfg, run_dir=run_dir, base_dir=base_dir, device=device or cfg.device, progress=progress)
    return ctx


def write_manifest(ctx: RunContext, started: str, stages: list[dict], extra: dict | None = None) -> Path:
    return write_json(ctx.path("manifest.json"), {
        "run_id": ctx.run_dir.name,
        "config_hash": ctx.cfg.config_hash(),
        "seed": ctx.cfg.seed,
        "device": ctx.device,
        "git_commit": _git_commit(),
        "packages": package_versions(),
        "inputs": ctx.hash_inputs(),
        "started": started,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "stages": [{"name": s["name"], "seconds": round(s["seconds"], 3), "cached": s["cached"]} for s in stages],
        "failed_models": failed_models(ctx),
        **(extra or {}),
    })


# Every stage by name: (run context, model or None) -> record. The one table both runners use.
STAGES: dict[str, Callable[[RunContext, str | None], dict]] = {
    "prepare": lambda ctx, m: stage_prepare(ctx),
    "train": lambda ctx, m: stage_train(ctx, m),  # type: ignore[arg-type]
    "map": lambda ctx, m: stage_map(ctx, m),  # type: ignore[arg-type]
    "assess": lambda ctx, m: stage_assess(ctx),
    "report": lambda ctx, m: stage_report(ctx),
}


def run_one(ctx: RunContext, stage: str, model: str | None = None, logger: Any = None) -> dict:
    """Run one stage with both cache levels of :mod:`pipeline.cache` (what every runner calls)."""
    return execute_stage(ctx, stage, lambda c: STAGES[stage](c, model), model, logger=logger)


def run_pipeline(ctx: RunContext) -> Path:
    """Run every stage in order in this process (no Prefect). Returns the run directory.

    Uses the same run-directory records and cross-run stage store as the Prefect flow.
    """
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    stages = [run_one(ctx, "prepare")]  # bad data stops here (InputError), before any model
    for m in ctx.cfg.models.enabled():
        clear_failure(ctx, m)
        stage = "train"
        try:
            stages.append(run_one(ctx, "train", m))
            stage = "map"
            stages.append(run_one(ctx, "map", m))
        except OutOfSpaceError:
            raise  # a full disk is not one model's failure: every later write would fail too
        except Exception as e:  # noqa: BLE001 - one model's failure must not sink the others
            record_failure(ctx, stage, m, e)
    stages.append(run_one(ctx, "assess"))
    stages.append(run_one(ctx, "report"))
    write_manifest(ctx, started, stages)
    return ctx.run_dir
