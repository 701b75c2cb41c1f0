"""Scenes: the rasters and labels of one run, resolved from the config.

A run reads one or several *scenes* (tiles, places, or dates kept apart). Each scene is
one image (a :class:`~pipeline.inputs.raster.RasterStack`: one multi-band file, single-band files,
or one file per date) and optionally its labels. Every scene shares the run's band layout
and class table; scenes may lie on different grids and in different CRSs, but share one
pixel size, so that a k x k patch covers the same ground everywhere.

A config without ``scenes`` (``rasters.paths`` and ``labels.path``) is one scene named
after the run. The glob form (``scenes: {rasters: "images/*.tif", labels: "labels/{name}.tif"}``)
gives one scene per matching file, named after its stem, in sorted order.

Stages open scenes one at a time (:func:`open_scene`), so memory never depends on how
many scenes a run has.
"""

from __future__ import annotations

import glob as globmod
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.errors import InputError
from pipeline.inputs.raster import Grid, RasterStack, alignment_message, check_nodata_fits
from pipeline.inputs.sample_data import resolve
from pipeline.inputs.settings import SCENE_NAME, LabelConfig, RasterConfig, SceneConfig, SceneGlobConfig

__all__ = ["Scene", "check_scenes", "open_scene", "resolve_scenes", "scene_name_for_run"]

log = logging.getLogger(__name__)


class ScenesSettings(Protocol):
    """The part of a run's configuration (:class:`pipeline.config.RunConfig`) that names its scenes."""

    @property
    def name(self) -> str: ...
    @property
    def rasters(self) -> RasterConfig | None: ...
    @property
    def labels(self) -> LabelConfig | None: ...
    @property
    def scenes(self) -> list[SceneConfig] | SceneGlobConfig | None: ...


@dataclass(frozen=True)
class Scene:
    """One resolved scene: its name, raster settings and (optional) labels, paths made local."""

    name: str
    rasters: RasterConfig
    labels: LabelConfig | None
    raster_paths: tuple[Path, ...]
    label_path: Path | None
    align_to: Path | None = None

    @property
    def has_labels(self) -> bool:
        return self.labels is not None and self.label_path is not None

    def input_files(self) -> list[Path]:
        """Every file the scene reads (a shapefile's sidecars included), for input hashing."""
        files = list(self.raster_paths)
        if self.align_to is not None:
            files.append(self.align_to)
        if self.label_path is not None:
            lp = self.label_path
            files.append(lp)
            if lp.suffix.lower() == ".shp":
                files += sorted(
                    p
                    for p in lp.parent.glob(lp.stem + ".*")
                    if p != lp and p.suffix.lower() in {".dbf", ".shx", ".prj", ".cpg"}
                )
        return files


def scene_name_for_run(cfg: ScenesSettings) -> str:
    """The scene name of a single-scene config: the run's name made file-name safe."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.name).strip("_.-") or "scene"
    return name if re.fullmatch(SCENE_NAME, name) else "scene"


def _merge(shared: RasterConfig | LabelConfig | None, own: dict) -> dict:
    base = shared.model_dump() if shared is not None else {}
    return {**{k: v for k, v in base.items() if v is not None}, **own}


def _scene(name: str, rasters: RasterConfig, labels: LabelConfig | None, base_dir: Path | None) -> Scene:
    paths = tuple(resolve(p, base_dir) for p in rasters.paths or [])
    lp = resolve(labels.path, base_dir) if labels is not None and labels.path else None
    align = resolve(rasters.align_to, base_dir) if rasters.align_to else None
    return Scene(name, rasters, labels, paths, lp, align)


def resolve_scenes(cfg: ScenesSettings, base_dir: Path | None) -> list[Scene]:
    """The run's scenes in order (paths resolved against ``base_dir``; files not opened)."""
    if cfg.scenes is None:
        # Without `scenes`, the config's validation requires `rasters` (labels may be absent).
        assert cfg.rasters is not None
        return [_scene(scene_name_for_run(cfg), cfg.rasters, cfg.labels, base_dir)]
    if isinstance(cfg.scenes, list):
        return [_scene(s.name, s.rasters, s.labels, base_dir) for s in cfg.scenes]
    g = cfg.scenes
    pattern = g.rasters if base_dir is None or Path(g.rasters).is_absolute() else str(Path(base_dir) / g.rasters)
    files = sorted(Path(p) for p in globmod.glob(pattern) if Path(p).is_file())
    if not files:
        raise InputError(f"scenes.rasters: no file matches {pattern!r}")
    stems = [p.stem for p in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(
            f"scenes.rasters: two files matching {g.rasters!r} have the stem {dup[0]!r}; scene names must be unique"
        )
    scenes = []
    for p in files:
        name = p.stem
        if not re.fullmatch(SCENE_NAME, name):
            raise InputError(f"{p}: {name!r} cannot name a scene (letters, digits, '_', '-' or '.')")
        rasters = RasterConfig.model_validate(_merge(cfg.rasters, {"paths": [str(p)]}))
        labels = None
        if g.labels is not None:
            try:
                lpath = g.labels.format(name=name)
            except (KeyError, IndexError, ValueError):
                raise InputError(
                    f"scenes.labels: {g.labels!r} is not a path template (write {{name}} where the scene name goes)"
                ) from None
            if resolve(lpath, base_dir).exists():
                labels = LabelConfig.model_validate(_merge(cfg.labels, {"path": lpath}))
        scenes.append(_scene(name, rasters, labels, base_dir))
    if not any(s.has_labels for s in scenes):
        raise InputError(f"scenes.labels: no label file found for any scene ({g.labels!r})")
    return scenes


def open_scene(scene: Scene, announce: bool = True) -> RasterStack:
    """Open a scene's image. Files warped onto a common grid are one warning in the log when
    ``announce`` (a run says it once, when ``prepare`` first opens the scene; later opens are
    quiet), else a debug line."""
    r = scene.rasters
    stack = RasterStack.open(
        list(scene.raster_paths), r.band_names, r.bands, r.nodata, dates=r.dates, align_to=scene.align_to, warn=False
    )
    if stack.alignment.get("warped"):
        level = logging.WARNING if announce else logging.DEBUG
        log.log(level, "scene %s: %s", scene.name, alignment_message(stack.alignment))
    if r.nodata is not None:  # a value no pixel can hold matches nothing: it cannot be meant
        try:
            check_nodata_fits(stack, r.nodata, "rasters.nodata")
        except InputError:
            stack.close()
            raise
    return stack


def _same_res(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def check_scenes(scenes: list[Scene]) -> dict[str, dict]:
    """Open every scene once (one at a time) and check they can share one model.

    All scenes must have the same band names (the first scene's layout is the run's) and
    the same pixel size. Returns per scene ``{"grid": Grid, "band_names": [...]}``; raises
    :class:`~pipeline.core.errors.InputError` naming the scene and file otherwise.
    """
    out: dict[str, dict] = {}
    first: Scene | None = None
    for sc in scenes:
        with open_scene(sc, announce=False) as st:  # prepare says it when it reads the scene
            info: dict[str, Any] = {"grid": st.grid, "band_names": list(st.band_names)}
        if first is None:
            first = sc
        else:
            ref = out[first.name]
            if info["band_names"] != ref["band_names"]:
                raise InputError(
                    f"scene {sc.name!r} ({sc.raster_paths[0]}): bands {info['band_names']} differ from "
                    f"scene {first.name!r} ({ref['band_names']}); every scene needs the same band layout"
                )
            g: Grid = info["grid"]
            if not _same_res(g.res, ref["grid"].res):
                raise InputError(
                    f"scene {sc.name!r} ({sc.raster_paths[0]}): pixel size {g.res[0]:g} x {g.res[1]:g} "
                    f"differs from scene {first.name!r} ({ref['grid'].res[0]:g} x {ref['grid'].res[1]:g}); "
                    "resample the scenes to one pixel size (set rasters.align_to)"
                )
        out[sc.name] = info
    return out
