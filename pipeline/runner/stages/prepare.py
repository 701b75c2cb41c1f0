"""Stage 1, ``prepare``: labels ingested scene by scene (dense labels thinned on a lattice),
empty bands dropped, the spatial split made (and audited across scenes), patches cut.

Writes samples.parquet, patches.npy (+ patches.json), labels.json, split.json, folds.json,
splits.gpkg and split_map.png.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config.schema import RunConfig
from pipeline.core.atomic import write_json
from pipeline.core.errors import InputError
from pipeline.runner.context import RunContext
from pipeline.runner.files import write_geoparquet

if TYPE_CHECKING:
    from pipeline.inputs.raster import RasterStack
    from pipeline.split.settings import SplitConfig
    from pipeline.split.types import SplitResult

log = logging.getLogger(__name__)


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
    geometry = sorted({g for d in dicts.values() for g in str(d.get("geometry") or "").split(" and ") if g})
    return {
        "source": f"{len(dicts)} scenes",
        "kind": "+".join(map(str, kinds)),
        **pooled,
        "geometry": " and ".join(geometry),
        "scenes": dicts,
    }


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
    from pipeline.inputs.labels import ingest_labels
    from pipeline.inputs.pixel_area import check_area_crs
    from pipeline.inputs.scenes import check_scenes

    cfg = ctx.cfg
    scenes = ctx.scenes()
    multi = len(scenes) > 1
    infos = check_scenes(scenes) if multi else {}
    parts: list[pd.DataFrame] = []
    reports: dict[str, Any] = {}
    grid = band_names = None
    alignment: dict = {}
    sampling: list[dict] = []
    for sc in scenes:
        if not sc.has_labels:
            log.info("scene %s: no labels; mapped only", sc.name)
            continue
        with ctx.open_stack(sc, drop=drop, announce=True) as stack:
            check_area_crs(stack.grid.crs, stack.paths[0])  # class areas must be computable: say so now
            if grid is None:
                grid, band_names = stack.grid, stack.band_names
                band_nodata = [None if v is None or not np.isfinite(v) else float(v) for v in stack.nodata]
                alignment = stack.alignment
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
        # alignment: the first scene's grid and how its files were put on it (saved with the models)
        {**labels_rec, "band_names": band_names, "band_nodata": band_nodata, "alignment": alignment},
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
        _split_view(samples, split_cfg, labels_rec),
        split_cfg,
        cfg.patch.size,
        grid.res,
        cfg.seed,
        crs=crs,
        large=bool(sampling["active"]),
    )
    used = result.config or split_cfg  # the strategy ``auto`` chose, and any nearby setting the split used
    if sampling["active"]:
        from pipeline.sampling.dense import apply_sampling, console_line

        samples, result, sampling = apply_sampling(
            samples, result, cfg.sampling, used, cfg.patch.size, grid.res, cfg.seed, ctx.class_names, sampling
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
    spatial = split_cfg.strategy in ("auto", "blocks", "kfold")
    if len(grids) < 2 or not spatial or getattr(split_cfg, "group_by", "") == "scene":
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
        if result.strategy in ("blocks", "kfold"):
            check_no_leak(a, f"split {result.strategy}{f' fold {i}' if len(result.folds) > 1 else ''} (across scenes)")
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
