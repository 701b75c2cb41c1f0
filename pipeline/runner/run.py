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
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config import RunConfig, dump_config
from pipeline.core.atomic import atomic_path, file_sha256, write_json, write_text
from pipeline.core.errors import InputError, OutOfSpaceError
from pipeline.models import registry
from pipeline.runner.store import cached_stage, execute_stage, run_stage, stage_key  # noqa: F401 - public here too

if TYPE_CHECKING:
    from pipeline.inputs.raster import RasterStack
    from pipeline.inputs.scenes import Scene
    from pipeline.models.base import Classifier, ModelMeta, TrainingData
    from pipeline.split.settings import SplitConfig
    from pipeline.split.types import Fold, SplitResult

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- helpers
def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return path


def write_geoparquet(df: pd.DataFrame, path: Path, crs: Any, scene_crs: dict[str, str] | None = None) -> Path:
    """``df`` as GeoParquet: its columns plus a point ``geometry`` from ``x``/``y`` in ``crs``
    (readable by geopandas with the CRS, and by pandas as a plain table). With scenes in several
    CRSs (``crs`` None, ``scene_crs`` naming each scene's), the geometry is reprojected into the
    first row's scene CRS; ``x``/``y`` stay in each scene's own CRS."""
    import geopandas as gpd

    from pipeline.split.outputs import rows_crs, to_common_crs

    row_crs, target = rows_crs(df, crs, scene_crs)
    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["x"], df["y"]), crs=None if row_crs is not None else crs)
    if row_crs is not None:
        gdf = to_common_crs(gdf, row_crs, target)
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
    _scenes: list | None = field(default=None, repr=False)

    def scenes(self) -> list:
        """The run's scenes (:class:`pipeline.inputs.scenes.Scene`), resolved once."""
        if self._scenes is None:
            from pipeline.inputs.scenes import resolve_scenes

            self._scenes = resolve_scenes(self.cfg, self.base_dir)
        return self._scenes

    @property
    def multi_scene(self) -> bool:
        """More than one scene: maps go to maps/<scene>/<model>.tif instead of maps/<model>.tif."""
        return len(self.scenes()) > 1

    def map_path(self, model: str, scene: str, suffix: str = ".tif") -> str:
        """Run-relative path of a scene's map (``suffix`` e.g. ``_confidence.tif``)."""
        return f"maps/{scene}/{model}{suffix}" if self.multi_scene else f"maps/{model}{suffix}"

    @property
    def class_ids(self) -> list[int]:
        return [c.id for c in self.cfg.classes]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.cfg.classes]

    def raster_paths(self) -> list[Path]:
        """The first scene's raster files (the only scene of a single-scene run)."""
        return list(self.scenes()[0].raster_paths)

    def label_path(self) -> Path:
        """The first labelled scene's label file."""
        return next(s.label_path for s in self.scenes() if s.has_labels)

    def path(self, *parts: str) -> Path:
        p = self.run_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def open_stack(self, scene: Scene | None = None, drop: list[str] | None = None) -> RasterStack:
        """A scene's image (default: the first scene) as the run uses it: the config's band
        selection, less the bands that ``prepare`` dropped as empty (``rasters.drop_empty_bands``;
        listed in labels.json)."""
        from pipeline.inputs.scenes import open_scene

        if drop is None:
            lab = self.run_dir / "labels.json"
            drop = list(read_json(lab).get("dropped_bands") or {}) if lab.exists() else []
        stack = open_scene(scene if scene is not None else self.scenes()[0])
        return stack.without(drop) if drop else stack

    def to_ref(self) -> dict:
        """A small picklable description (for tasks in other processes); see :meth:`from_ref`."""
        return {
            "run_dir": str(Path(self.run_dir).resolve()),
            "base_dir": str(Path(self.base_dir).resolve()),
            "device": self.device,
            "progress": self.progress,
            "inputs": self.hash_inputs(),
        }

    @classmethod
    def from_ref(cls, ref: dict) -> RunContext:
        """Rebuild the context from the run directory's config.yaml (in any process)."""
        import yaml

        from pipeline.config import parse_config

        run_dir = Path(ref["run_dir"])
        raw = yaml.safe_load((run_dir / "config.yaml").read_text())
        cfg = parse_config(raw, str(run_dir / "config.yaml"))
        ctx = cls(
            cfg=cfg, run_dir=run_dir, base_dir=Path(ref["base_dir"]), device=ref["device"], progress=ref["progress"]
        )
        ctx.inputs = dict(ref.get("inputs") or {})
        return ctx

    def hash_inputs(self) -> dict[str, dict]:
        """Sizes and SHA-256 of every input file of every scene (label files' sidecars included)."""
        if self.inputs:
            return self.inputs
        paths: list[Path] = []
        for sc in self.scenes():
            for p in sc.raster_paths:
                if not p.exists():
                    raise InputError(f"{p}: raster file not found (scene {sc.name!r})")
            if sc.label_path is not None and not sc.label_path.exists():
                raise InputError(f"{sc.label_path}: label file not found (scene {sc.name!r})")
            paths += [p for p in sc.input_files() if p not in paths]
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
    thins classes on a lattice before the split (see :mod:`pipeline.sampling.dense`); keeps the record."""

    def __init__(self, cfg: RunConfig, stack: RasterStack) -> None:
        from pipeline.sampling.patches import storage_dtype

        self.cfg = cfg
        dt, _ = storage_dtype([str(d) for d in stack.dtypes], list(stack.nodata))
        self.bytes_per_sample = stack.count * cfg.patch.size**2 * dt.itemsize
        self.active = False
        self.record: dict[str, Any] = {"mode": cfg.sampling.mode, "active": False}

    def thin(self, rows: np.ndarray, cols: np.ndarray, class_ids: np.ndarray) -> np.ndarray | None:
        from pipeline.sampling.dense import decide, thin_mask, thinning_strides

        sc = self.cfg.sampling
        self.active, reason = decide(sc, len(rows), self.bytes_per_sample)
        ids, counts = np.unique(class_ids, return_counts=True)
        name = {c.id: c.name for c in self.cfg.classes}
        self.record.update(
            active=self.active,
            reason=reason,
            max_per_class=sc.max_per_class,
            labelled_per_class={name[int(i)]: int(n) for i, n in zip(ids, counts)},
        )
        if not self.active:
            return None
        strides = thinning_strides({int(i): int(n) for i, n in zip(ids, counts)}, sc.max_per_class)
        self.record["thinning_stride"] = {name[c]: s for c, s in strides.items()}
        if all(s == 1 for s in strides.values()):
            return None
        keep = thin_mask(rows, cols, class_ids, strides)
        self.record["thinned_per_class"] = {name[int(i)]: int(np.sum(keep & (class_ids == i))) for i in ids}
        return keep


def _add_counts(acc: dict, d: dict) -> dict:
    """``acc`` plus the numbers of ``d``, key by key, nested dicts included (lists are joined)."""
    for k, v in d.items():
        if isinstance(v, bool):
            acc.setdefault(k, v)
        elif isinstance(v, (int, float)):
            acc[k] = acc.get(k, 0) + v
        elif isinstance(v, dict):
            prev = acc.get(k)
            acc[k] = _add_counts(prev if isinstance(prev, dict) else {}, v)
        elif isinstance(v, list):
            acc.setdefault(k, []).extend(v)
    return acc


def _pool_label_reports(reports: dict[str, Any]) -> dict:
    """labels.json of a multi-scene run: the reports' counts summed, plus each scene's own report."""
    dicts = {name: r.to_dict() for name, r in reports.items()}
    pooled: dict[str, Any] = {}
    for d in dicts.values():
        _add_counts(pooled, {k: v for k, v in d.items() if k not in ("source", "kind")})
    kinds = sorted({d.get("kind") for d in dicts.values()})
    return {"source": f"{len(dicts)} scenes", "kind": "+".join(map(str, kinds)), **pooled, "scenes": dicts}


def _merge_sampling(records: list[dict]) -> dict:
    """One sampling record for several scenes: labelled pixels summed, the largest lattice stride."""
    active = [r for r in records if r.get("active")]
    out = dict(active[0] if active else records[0])
    out["active"] = bool(active)
    per_class: dict[str, int] = {}
    strides: dict[str, int] = {}
    for r in records:
        for k, v in (r.get("labelled_per_class") or {}).items():
            per_class[k] = per_class.get(k, 0) + int(v)
        for k, v in (r.get("thinning_stride") or {}).items():
            strides[k] = max(strides.get(k, 1), int(v))
    out["labelled_per_class"] = per_class
    if strides:
        out["thinning_stride"] = strides
    out.pop("thinned_per_class", None)
    return out


def _ingest_scenes(ctx: RunContext, drop: list[str]) -> tuple[pd.DataFrame, dict, Any, dict]:
    """Labelled pixels of every scene, scene after scene: the samples table (with ``scene``),
    the labels.json record, the first scene's grid and the sampling record (dense labels are
    thinned scene by scene as they are read). A group (polygon) id is the feature's row in its
    scene's label file: (scene, group) identifies a polygon."""
    from pipeline.evaluation.areas import check_area_crs
    from pipeline.inputs.labels import ingest_labels
    from pipeline.inputs.scenes import check_scenes

    cfg = ctx.cfg
    scenes = ctx.scenes()
    multi = len(scenes) > 1
    infos = check_scenes(scenes) if multi else {}
    parts: list[pd.DataFrame] = []
    reports: dict[str, Any] = {}
    grid = band_names = None
    sampling: list[dict] = []
    for sc in scenes:
        if not sc.has_labels:
            log.info("scene %s: no labels; mapped only", sc.name)
            continue
        with ctx.open_stack(sc, drop=drop) as stack:
            check_area_crs(stack.grid.crs, stack.paths[0])  # class areas must be computable: say so now
            if grid is None:
                grid, band_names = stack.grid, stack.band_names
                band_nodata = [None if v is None or not np.isfinite(v) else float(v) for v in stack.nodata]
            sampler = _Sampler(cfg, stack)
            part, report = ingest_labels(
                sc.labels,
                sc.label_path,
                cfg.classes,
                stack,
                window_size=max(cfg.mapping.window_size, 1024),
                on_unknown=sc.labels.on_unknown,
                progress=ctx.progress,
                thin=sampler.thin,
                on_empty_class=sc.labels.on_empty_class,
                require_every_class=not multi,
                allow_empty=multi,
            )
            sampling.append(sampler.record)
        for w in report.warnings():
            log.warning("%s%s", f"scene {sc.name}: " if multi else "", w)
        if multi and part.empty:
            log.warning("scene %s: no labelled pixel on valid data of %s", sc.name, sc.raster_paths[0])
        parts.append(part.assign(scene=sc.name))
        reports[sc.name] = report
    samples = pd.concat(parts, ignore_index=True)
    if samples.empty:
        raise InputError("scenes: no labelled pixel falls on valid data in any scene")
    if not multi:
        labels_rec = next(iter(reports.values())).to_dict()
    else:
        present = set(samples["class_name"])
        missing = [c.name for c in cfg.classes if c.name not in present]
        strict = any(sc.labels.on_empty_class == "error" for sc in scenes if sc.has_labels)
        if missing and (strict or len(cfg.classes) - len(missing) < 2):
            raise InputError(
                f"classes: class {missing[0]!r} has no labelled pixels on valid data in any scene; "
                "add labels for it or remove it from 'classes'"
            )
        labels_rec = _pool_label_reports(reports)
        labels_rec["classes_without_labels"] = {n: "no labelled pixel on valid data in any scene" for n in missing}
        for n in missing:
            log.warning("class %s has no labelled pixel on valid data in any scene; it is left out", n)
        labels_rec["scene_grids"] = {
            n: {
                "crs": i["grid"].crs.to_string(),
                "width": i["grid"].width,
                "height": i["grid"].height,
                "res": list(i["grid"].res),
            }
            for n, i in infos.items()
        }
    samples["scene"] = samples["scene"].astype(str)
    return (
        samples,
        {**labels_rec, "band_names": band_names, "band_nodata": band_nodata},
        grid,
        _merge_sampling(sampling),
    )


def stage_prepare(ctx: RunContext) -> dict:
    """Ingest labels, tile patches, build the spatial split. Writes samples.parquet, patches.npy,
    labels.json, split.json, splits.gpkg and split_map.png.

    Scenes are read one after the other, window by window: memory follows the window size
    and the number of samples. Patches are cut from their own scene only (the rows of the
    patch store follow the samples table, which is ordered scene by scene).
    """
    from pipeline.inputs.labels import EmptyBandsError
    from pipeline.sampling.patches import concat_patch_stores, extract_patches
    from pipeline.split.make import make_splits
    from pipeline.split.outputs import plot_split_map, write_splits_gpkg

    cfg = ctx.cfg
    dropped_bands: dict[str, str] = {}
    while True:  # a band without data in some scene is dropped from every scene (one band layout)
        try:
            samples, labels_rec, grid, sampling = _ingest_scenes(ctx, list(dropped_bands))
            break
        except EmptyBandsError as e:
            new = {b: w for b, w in e.why.items() if b not in dropped_bands}
            if not any(sc.rasters.drop_empty_bands for sc in ctx.scenes()) or not new:
                raise
            dropped_bands.update(new)
            log.warning(
                "dropped %d band(s) without data (rasters.drop_empty_bands): %s",
                len(new),
                "; ".join(f"{b}: {w}" for b, w in new.items()),
            )
    scenes = [s for s in ctx.scenes() if s.has_labels]
    crss = set(labels_rec.get("scene_grids", {}).get(s.name, {}).get("crs") for s in scenes) - {None}
    crs = grid.crs if len(crss) <= 1 else None  # scenes in several CRSs: outputs reprojected to the first's
    samples, split_cfg = _predefined_inputs(ctx, samples)
    result = make_splits(
        _split_view(samples, split_cfg, labels_rec), split_cfg, cfg.patch.size, grid.res, cfg.seed, crs=crs
    )
    if sampling["active"]:
        from pipeline.sampling.dense import apply_sampling, console_line

        samples, result, sampling = apply_sampling(
            samples, result, cfg.sampling, split_cfg, cfg.patch.size, grid.res, cfg.seed, ctx.class_names, sampling
        )
        log.warning(console_line(sampling))
    samples = samples.assign(split=result.split, block=result.block.astype(np.int64), fold=result.fold.astype(np.int64))
    drop = list(dropped_bands)
    if len(scenes) == 1:
        with ctx.open_stack(scenes[0], drop=drop) as stack:
            extract_patches(
                stack,
                samples,
                cfg.patch.size,
                ctx.path("patches.npy"),
                window_size=cfg.mapping.window_size,
                progress=ctx.progress,
            )
    else:
        parts = []
        by_scene = samples.groupby("scene", sort=False).indices
        for i, sc in enumerate(scenes):
            idx = by_scene.get(sc.name)
            if idx is None:
                continue
            if not np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
                raise RuntimeError("samples must be ordered scene by scene")  # _ingest_scenes guarantees it
            part = ctx.path("patches.parts", f"{i:05d}.npy")
            with ctx.open_stack(sc, drop=drop) as stack:
                extract_patches(
                    stack,
                    samples.iloc[idx],
                    cfg.patch.size,
                    part,
                    window_size=cfg.mapping.window_size,
                    progress=ctx.progress,
                )
            parts.append(part)
        concat_patch_stores(parts, ctx.path("patches.npy"))
        shutil.rmtree(ctx.run_dir / "patches.parts", ignore_errors=True)
    split_rec = dict(result.report)
    if len(scenes) > 1:
        split_rec["scenes"] = _scene_split_counts(samples, cfg.split.strategy)
        split_rec["audit_across_scenes"] = _audit_across_scenes(ctx, samples, result, labels_rec)
    band_names = labels_rec["band_names"]
    scene_crs = {n: g["crs"] for n, g in (labels_rec.get("scene_grids") or {}).items()}
    write_geoparquet(samples, ctx.path("samples.parquet"), crs, scene_crs)
    folds = [{k: getattr(f, k).tolist() for k in ("train", "validation", "test")} for f in result.folds]
    write_json(ctx.path("folds.json"), folds)
    write_json(ctx.path("labels.json"), {**labels_rec, "sampling": sampling, "dropped_bands": dropped_bands})
    write_json(ctx.path("split.json"), split_rec)
    write_splits_gpkg(result, samples, ctx.path("splits.gpkg"), crs, scene_crs)
    plot_split_map(samples, result, ctx.path("split_map.png"), scene_crs=scene_crs)
    return {
        "outputs": [
            "samples.parquet",
            "patches.npy",
            "patches.json",
            "labels.json",
            "split.json",
            "folds.json",
            "splits.gpkg",
            "split_map.png",
        ],
        "n_samples": len(samples),
        "band_names": band_names,
    }


def _split_view(samples: pd.DataFrame, split_cfg: Any, labels_rec: dict) -> pd.DataFrame:
    """The samples as the spatial split sees them.

    Blocks, groups and the buffer never reach across two scenes (the split keys them by the
    ``scene`` column). Scenes in one CRS, though, share one map: adjacent tiles touch, and
    dates of one place overlap pixel for pixel, so keying blocks by scene would put the same
    ground in training (one date) and test (another), which the cross-scene audit rightly
    refuses. So for ``blocks``/``kfold`` (unless ``group_by: scene``) the split sees one
    "scene" per CRS, with polygon ids made unique across the scenes. Scenes in different CRSs
    stay apart; ``predefined``, ``random`` and ``group_by: scene`` see the real scenes."""
    grids = labels_rec.get("scene_grids") or {}
    if len(grids) < 2 or split_cfg.strategy not in ("blocks", "kfold") or getattr(split_cfg, "group_by", "") == "scene":
        return samples
    zone = samples["scene"].map({n: f"crs {g['crs']}" for n, g in grids.items()}).astype(str)
    group = samples.groupby(["scene", "group"], sort=False).ngroup().to_numpy(np.int64)
    return samples.assign(scene=zone, group=group)


def _scene_split_counts(samples: pd.DataFrame, strategy: str) -> dict[str, dict[str, int]]:
    """Samples per split in each scene (fold 0's assignment for kfold)."""
    tab = samples.groupby(["scene", "split"], sort=False).size()
    out: dict[str, dict[str, int]] = {}
    for (scene, split), n in tab.items():
        out.setdefault(str(scene), {})[str(split)] = int(n)
    return out


def _audit_across_scenes(ctx: RunContext, samples: pd.DataFrame, result: SplitResult, labels_rec: dict) -> dict:
    """The leakage audit over all scenes at once: samples of scenes in one CRS are compared with
    each other (overlapping scenes, e.g. dates of one place, can leak), scenes in different CRSs
    never (their coordinates are not comparable). Enforced like the split's own audit."""
    from pipeline.split.audit import audit_split, check_no_leak

    grids = labels_rec.get("scene_grids", {})
    zone_of = {n: g["crs"] for n, g in grids.items()}
    zones = samples["scene"].map(zone_of).fillna("").to_numpy()
    xy = samples[["x", "y"]].to_numpy(np.float64)
    res = tuple(next(iter(grids.values()))["res"])
    audits = []
    for i, f in enumerate(result.folds):
        a = audit_split(xy, res, ctx.cfg.patch.size, f.train, f.test, f.validation, zones=zones)
        audits.append(a)
        if ctx.cfg.split.strategy in ("blocks", "kfold"):
            check_no_leak(
                a, f"split {ctx.cfg.split.strategy}{f' fold {i}' if len(result.folds) > 1 else ''} (across scenes)"
            )
    out = dict(audits[0])
    for a in audits[1:]:
        for k, v in a.items():
            if k == "min_train_test_distance":
                vals = [x for x in (out[k], v) if x is not None]
                out[k] = min(vals) if vals else None
            else:
                out[k] = int(out[k]) + int(v)
    out["crs_zones"] = len(set(zone_of.values()))
    return out


def _predefined_inputs(ctx: RunContext, samples: pd.DataFrame) -> tuple[pd.DataFrame, SplitConfig]:
    """For ``split.strategy: predefined``: the label file's split column on the samples, and
    ``split.files`` with CSV lists expanded relative to the config's folder."""
    from pipeline.split.predefined import attach_label_column, expand_split_files
    from pipeline.split.settings import SplitFiles

    sc = ctx.cfg.split
    if sc.strategy != "predefined":
        return samples, sc
    if sc.files is not None:
        return samples, sc.model_copy(update={"files": SplitFiles(**expand_split_files(sc.files, ctx.base_dir))})
    if sc.column not in samples.columns:
        parts = []
        for scene in ctx.scenes():  # each scene's pixels take the column of that scene's label file
            sub = samples[samples["scene"] == scene.name]
            if len(sub):
                parts.append(attach_label_column(sub, scene.label_path, scene.labels, sc.column))
        samples = pd.concat(parts).loc[samples.index] if parts else samples
    return samples, sc


def _training_data(ctx: RunContext) -> tuple[pd.DataFrame, TrainingData]:
    from pipeline.models.base import TrainingData
    from pipeline.sampling.patches import open_patches

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet")
    labels = read_json(ctx.run_dir / "labels.json")
    # Group ids repeat across scenes (each is a row of its scene's label file): models get one id per polygon.
    multi = "scene" in samples and samples["scene"].nunique() > 1
    groups = (
        samples.groupby(["scene", "group"], sort=False).ngroup().to_numpy(np.int64)
        if multi
        else samples["group"].to_numpy(np.int64)
    )
    data = TrainingData(
        open_patches(ctx.run_dir / "patches.npy"),
        samples["class_id"].to_numpy(np.int64),
        groups,
        samples[["x", "y"]].to_numpy(np.float64),
        labels["band_names"],
    )
    return samples, data


def _meta(ctx: RunContext, model: str, band_names: list[str], data: TrainingData | None = None) -> ModelMeta:
    from pipeline.models.base import ModelMeta

    c = ctx.cfg.classes
    nodata = read_json(ctx.run_dir / "labels.json").get("band_nodata")
    return ModelMeta(
        model=model,
        band_names=list(band_names),
        class_ids=[x.id for x in c],
        class_names=[x.name for x in c],
        class_colors=[x.color for x in c],
        patch_size=ctx.cfg.patch.size,
        nodata=nodata,
        value_range=_value_range(ctx, data) if data is not None else None,
    )


def _value_range(ctx: RunContext, data: TrainingData) -> dict:
    """Percentiles of (a sample of) the training pixels and the bands' data types, so that
    ``landcover map`` can tell an input in other units (pipeline.inputs.value_range)."""
    from pipeline.inputs.value_range import MAX_SAMPLE, training_value_range

    n = len(data)
    idx = (
        np.arange(n)
        if n <= MAX_SAMPLE
        else np.sort(np.random.default_rng(ctx.cfg.seed).choice(n, MAX_SAMPLE, replace=False))
    )
    with ctx.open_stack() as stack:
        dtypes = list(stack.dtypes)
    return training_value_range(data.subset(idx).centre(), dtypes)


def _fit(
    ctx: RunContext, model: str, data: TrainingData, fold: Fold, meta: ModelMeta, what: str = ""
) -> tuple[Classifier, float]:
    """Fit one model on one fold; ``what`` names the fit on its progress bar (e.g. "random-split fit")."""
    from pipeline.models import build_model
    from pipeline.models.base import ShowsProgress

    settings = getattr(ctx.cfg.models, model)
    m = build_model(model, settings, meta, seed=ctx.cfg.seed, device=ctx.device)
    if isinstance(m, ShowsProgress):
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
    return {
        names.get(int(c), str(c)): why.get(str(c), "too few training samples")
        for c in info.get("dropped_classes") or []
    }


def stage_train(ctx: RunContext, model: str) -> dict:
    """Fit ``model`` on every fold of the spatial split, predict each fold's test samples, and
    (unless disabled) refit on a random pixel split for the inflation contrast.

    Writes models/<model>.<pt|skops>, models/<model>.json, eval/<model>.parquet and, for deep
    models, curves/<model>.json and .png.
    """
    from pipeline.split.random import random_split
    from pipeline.split.types import Fold

    samples, data = _training_data(ctx)
    meta = _meta(ctx, model, data.band_names, data)
    folds = [
        Fold(*(np.asarray(f[k], dtype=np.int64) for k in ("train", "validation", "test")))
        for f in read_json(ctx.run_dir / "folds.json")
    ]
    rows = []
    fit_seconds = 0.0
    final = None
    for i, fold in enumerate(folds):
        m, secs = _fit(ctx, model, data, fold, meta, f"spatial fold {i + 1}/{len(folds)}" if len(folds) > 1 else "")
        fit_seconds += secs
        pred, conf = m.predict_patches(data.subset(fold.test).patches)
        rows.append(
            pd.DataFrame(
                {
                    "sample": fold.test,
                    "fold": i,
                    "block": samples["block"].to_numpy()[fold.test],
                    "y_true": data.y[fold.test],
                    "y_pred": pred,
                    "confidence": conf,
                }
            )
        )
        if i == 0:
            final = m  # the model that maps the scene: fit on fold 0's training blocks
    if final is None:  # the split stage writes at least one fold: an empty list is a damaged run
        raise InputError(f"{ctx.run_dir / 'folds.json'}: lists no fold; run the split stage again")
    evald = pd.concat(rows, ignore_index=True)
    record: dict[str, Any] = {
        "fit_seconds": fit_seconds / len(folds),
        "folds": len(folds),
        "fit_info": getattr(final, "fit_info", {}),
    }
    dropped = dropped_classes(final, meta)
    if dropped:
        record["dropped_classes"] = dropped
        log.warning(
            "%s left out class(es) it could not learn: %s",
            model,
            "; ".join(f"{n} ({why})" for n, why in dropped.items()),
        )
    if registry.get(model).deep:  # (torch is imported for deep models only)
        from pipeline.models.deep import DeepModel, save_learning_curves

        if not isinstance(final, DeepModel):
            raise TypeError(f"{model}: registered as a deep model, but {type(final).__name__} is not a DeepModel")
        record["epochs_run"] = final.fit_info.get("epochs_run")
        record["best_epoch"] = final.fit_info.get("best_epoch")
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
    """Classify every scene with the saved model, one scene after the other: maps/<model>.tif and
    maps/<model>_confidence.tif for a single scene, maps/<scene>/<model>[_confidence].tif for several."""
    from pipeline.inputs.class_table import sidecar_paths
    from pipeline.mapping.classify import classify_raster, dask_client_here
    from pipeline.models import load_model

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


def _assess_model(ctx: RunContext, m: str) -> tuple[dict, np.ndarray, np.ndarray, dict, pd.DataFrame]:
    """Metrics of one model from its test predictions and its maps (pooled over scenes):
    (metrics, y_true, y_pred, train record, test predictions)."""
    from pipeline.evaluation.accuracy import assess_model, confidence_summary

    ids, names = ctx.class_ids, ctx.class_names
    ev = pd.read_parquet(ctx.run_dir / "eval" / f"{m}.parquet").sort_values(["fold", "sample"], kind="stable")
    rec = read_json(ctx.run_dir / "models" / f"{m}.json")
    maprec = read_json(ctx.run_dir / "maps" / f"{m}.json")
    y, p = ev["y_true"].to_numpy(), ev["y_pred"].to_numpy()
    res = assess_model(
        y,
        p,
        ev["block"].to_numpy(),
        ids,
        names,
        map_path=[ctx.run_dir / ctx.map_path(m, sc.name) for sc in ctx.scenes()],
        seed=ctx.cfg.seed,
    )
    res["fit_seconds"] = rec["fit_seconds"]
    res["predict_mpx_per_s"] = maprec["predict_mpx_per_s"]
    for k in ("epochs_run", "best_epoch"):
        if k in rec:
            res[k] = rec[k]
    res["fit_info"] = rec.get("fit_info", {})
    res["dropped_classes"] = rec.get("dropped_classes", {})
    if "confidence" in ev:
        res["confidence"] = confidence_summary(ev["confidence"].to_numpy(), y == p)
    return res, y, p, rec, ev


def _scene_metrics(ctx: RunContext, evals: dict[str, pd.DataFrame], samples: pd.DataFrame) -> dict:
    """metrics.json["scenes"]: per scene, its sample counts per split, each model's accuracy on
    its test samples (``None`` where a scene has no test sample) and the paths of its maps."""
    from pipeline.evaluation.accuracy import classification_metrics

    ids, names = ctx.class_ids, ctx.class_names
    scene_of = samples["scene"].to_numpy()
    out: dict[str, Any] = {}
    for sc in ctx.scenes():
        ss = samples[samples["scene"] == sc.name]
        entry: dict[str, Any] = {
            "labelled": sc.has_labels,
            "samples": int(len(ss)),
            "split_counts": {str(k): int(v) for k, v in ss["split"].value_counts().items()},
            "models": {},
            "maps": {},
        }
        for m, ev in evals.items():
            sel = ev[scene_of[ev["sample"].to_numpy()] == sc.name]
            if len(sel):
                r = classification_metrics(sel["y_true"].to_numpy(), sel["y_pred"].to_numpy(), ids, names)
                entry["models"][m] = {
                    "overall_accuracy": r["overall_accuracy"],
                    "kappa": r["kappa"],
                    "macro_f1": r["macro_f1"],
                    "test_samples": int(len(sel)),
                }
            else:
                entry["models"][m] = {"overall_accuracy": None, "kappa": None, "macro_f1": None, "test_samples": 0}
            entry["maps"][m] = ctx.map_path(m, sc.name)
        out[sc.name] = entry
    return out


def _reference_check(ctx: RunContext, models: list[str]) -> dict:
    """Per-polygon accuracy over all models and the polygons every model contradicts (pipeline.evaluation.reference_polygons)."""
    from pipeline.evaluation.reference_polygons import reference_check
    from pipeline.sampling.patches import open_patches

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet")
    evals = {m: pd.read_parquet(ctx.run_dir / "eval" / f"{m}.parquet") for m in models}
    return reference_check(
        samples,
        evals,
        dict(zip(ctx.class_ids, ctx.class_names)),
        open_patches(ctx.run_dir / "patches.npy"),
        read_json(ctx.run_dir / "labels.json")["band_names"],
    )


def _evidence(ctx: RunContext) -> dict:
    """metrics.json "evidence": can the (pooled) test set support a ranking? (pipeline.evaluation.evidence)"""
    from pipeline.evaluation.evidence import assess_evidence, summarise_test_set

    samples = pd.read_parquet(ctx.run_dir / "samples.parquet", columns=["class_id", "block", "group"])
    test = np.unique(
        np.concatenate(
            [np.asarray(f["test"], dtype=np.int64) for f in read_json(ctx.run_dir / "folds.json")]
            or [np.empty(0, np.int64)]
        )
    )
    t = samples.iloc[test]
    summary = summarise_test_set(
        t["class_id"].to_numpy(), t["block"].to_numpy(), t["group"].to_numpy(), ctx.class_ids, ctx.class_names
    )
    empty = list(read_json(ctx.run_dir / "labels.json").get("classes_without_labels") or {})
    ev = assess_evidence(summary, read_json(ctx.run_dir / "split.json"), skip_classes=empty)
    if not ev["conclusive"]:
        log.warning("evaluation inconclusive: %s", "; ".join(ev["reasons"]))
    if ev["leakage"]:
        log.warning("accuracy inflated by spatial leakage: %s", "; ".join(ev["leakage_reasons"]))
    return ev


def stage_assess(ctx: RunContext) -> dict:
    """Combine every model's test predictions into metrics.json."""
    from pipeline.evaluation.accuracy import pairwise_mcnemar

    cfg = ctx.cfg
    models: dict[str, Any] = {}
    contrast: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    y_ref = None
    failed = failed_models(ctx)
    evals: dict[str, pd.DataFrame] = {}
    for m in cfg.models.enabled():
        if m in failed:
            continue
        try:
            res, y, p, rec, evals[m] = _assess_model(ctx, m)
        except Exception as e:  # noqa: BLE001 - one model's failure must not sink the others
            failed[m] = record_failure(ctx, "assess", m, e)
            continue
        models[m] = res
        preds[m] = p
        y_ref = y
        if "overall_accuracy_random" in rec:
            oa = res["overall_accuracy"]
            contrast[m] = {
                "overall_accuracy_random": rec["overall_accuracy_random"],
                "overall_accuracy_spatial": oa,
                "gap": rec["overall_accuracy_random"] - oa,
            }
    metrics = {
        "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in cfg.classes],
        "models": models,
        "split": read_json(ctx.run_dir / "split.json"),
        "random_split_contrast": contrast,
        "pairwise": pairwise_mcnemar(y_ref, preds) if y_ref is not None and len(preds) > 1 else [],
        "labels": read_json(ctx.run_dir / "labels.json"),
        "failed_models": failed,
        "polygons": _reference_check(ctx, list(models)),
        **(
            {"scenes": _scene_metrics(ctx, evals, pd.read_parquet(ctx.run_dir / "samples.parquet"))}
            if ctx.multi_scene
            else {}
        ),
        "evidence": _evidence(ctx),
    }
    write_json(ctx.path("metrics.json"), metrics)
    return {"outputs": ["metrics.json"]}


def stage_report(ctx: RunContext) -> dict:
    from pipeline.report.page import write_report

    html, md = write_report(ctx.run_dir)
    return {"outputs": [html.name, md.name]}


# ----------------------------------------------------------------------------- run driver
def new_run_id(cfg: RunConfig) -> str:
    return f"{cfg.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{cfg.config_hash()[:6]}"


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


def init_run_dir(
    cfg: RunConfig,
    base_dir: Path,
    out: Path | None = None,
    run_id: str | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> RunContext:
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
            raise InputError(
                f"--resume {run_id}: the configuration differs from the one in {run_dir}/config.yaml; "
                "start a new run instead"
            )
    else:
        run_dir = root / (run_id or new_run_id(cfg))
        if run_dir.exists() and any(run_dir.iterdir()):
            raise InputError(f"{run_dir}: run directory exists already; use --resume to continue it")
        if cfg.split.strategy == "predefined" and cfg.split.files is not None:
            # a split by scenes that cannot work stops here, not after the labels were ingested
            from pipeline.inputs.scenes import resolve_scenes
            from pipeline.split.predefined import check_split_files

            scenes = resolve_scenes(cfg, base_dir)
            labelled = [s.name for s in scenes if s.has_labels]
            check_split_files(cfg.split.files, labelled, base_dir, [s.name for s in scenes])
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", dump_config(cfg))
    except OSError as e:  # read-only or missing output folder, disk full: one line naming the folder
        raise InputError(f"{e.filename or run_dir}: cannot write the run directory ({e.strerror or e})") from None
    ctx = RunContext(cfg=cfg, run_dir=run_dir, base_dir=base_dir, device=device or cfg.device, progress=progress)
    return ctx


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


def _one_model(stage: str, model: str | None) -> str:
    """The model a per-model stage runs for (the runners always name one)."""
    if model is None:
        raise ValueError(f"stage {stage!r} runs once per model; no model was given")
    return model


# Every stage by name: (run context, model or None) -> record. The one table both runners use.
STAGES: dict[str, Callable[[RunContext, str | None], dict]] = {
    "prepare": lambda ctx, m: stage_prepare(ctx),
    "train": lambda ctx, m: stage_train(ctx, _one_model("train", m)),
    "map": lambda ctx, m: stage_map(ctx, _one_model("map", m)),
    "assess": lambda ctx, m: stage_assess(ctx),
    "report": lambda ctx, m: stage_report(ctx),
}


def run_one(ctx: RunContext, stage: str, model: str | None = None, logger: Any = None) -> dict:
    """Run one stage with both cache levels of :mod:`pipeline.runner.store` (what every runner calls)."""
    return execute_stage(ctx, stage, lambda c: STAGES[stage](c, model), model, logger=logger)


def run_pipeline(ctx: RunContext) -> Path:
    """Run every stage in order in this process (no Prefect). Returns the run directory.

    Uses the same run-directory records and cross-run stage store as the Prefect flow.
    """
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
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
