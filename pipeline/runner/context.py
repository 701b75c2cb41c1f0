"""The run context and the run directory it describes.

:class:`RunContext` is everything a stage needs (the validated config, the run directory, the
folder relative config paths resolve against, the device); :func:`init_run_dir` creates a run
directory (or reopens one for ``--resume``) and writes its config.yaml.

Run directory layout: docs/outputs.md.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.loading import dump_config
from pipeline.config.schema import RunConfig
from pipeline.core.atomic import file_sha256, is_out_of_space, out_of_space, write_text
from pipeline.core.errors import InputError
from pipeline.runner.files import read_json

if TYPE_CHECKING:
    from pipeline.inputs.raster import RasterStack
    from pipeline.inputs.scenes import Scene


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
    _unlock: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)
    # scenes whose alignment warning this process has shown (prepare reads a scene several times)
    _announced: set[str] = field(default_factory=set, repr=False)

    def close(self) -> None:
        """Give back the run directory's lock (:mod:`pipeline.runner.lock`) that :func:`init_run_dir`
        took; the process's end gives it back too."""
        self._unlock()

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def open_stack(
        self, scene: Scene | None = None, drop: list[str] | None = None, announce: bool = False
    ) -> RasterStack:
        """A scene's image (default: the first scene) as the run uses it: the config's band
        selection, less the bands that ``prepare`` dropped as empty (``rasters.drop_empty_bands``;
        listed in labels.json). Files warped onto one grid are a warning once per scene when
        ``announce`` (``prepare``: once per run, and recorded in labels.json), else a debug line."""
        from pipeline.inputs.scenes import open_scene

        if drop is None:
            lab = self.run_dir / "labels.json"
            drop = list(read_json(lab).get("dropped_bands") or {}) if lab.exists() else []
        scene = scene if scene is not None else self.scenes()[0]
        stack = open_scene(scene, announce=announce and scene.name not in self._announced)
        if announce:
            self._announced.add(scene.name)
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

        from pipeline.config.loading import parse_config

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


def _same_config(old_yaml: str, cfg: RunConfig) -> bool:
    """Whether a run directory's config.yaml, read with today's settings, is ``cfg``: a section or
    key added since the run was made (with its default) does not make it a different config."""
    import yaml

    from pipeline.config.loading import parse_config

    try:
        return dump_config(parse_config(yaml.safe_load(old_yaml), "config.yaml")) == dump_config(cfg)
    except (InputError, yaml.YAMLError):
        return False


def new_run_id(cfg: RunConfig) -> str:
    return f"{cfg.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{cfg.config_hash()[:6]}"


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
    from pipeline.config.schema import check_dir_name

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
        if old != dump_config(cfg) and not _same_config(old, cfg):
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
    from pipeline.runner.lock import lock_run_dir

    unlock: Callable[[], None] = lambda: None  # noqa: E731 - replaced once the lock is taken
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # One process per run directory: a --resume of a run still running is refused here.
        unlock = lock_run_dir(run_dir, f"--resume {run_id}" if resume else "")
        write_text(run_dir / "config.yaml", dump_config(cfg))
    except OSError as e:  # read-only or missing output folder, disk full: one line naming the folder
        unlock()
        if is_out_of_space(e):
            raise out_of_space(e.filename or run_dir, None) from None
        raise InputError(f"{e.filename or run_dir}: cannot write the run directory ({e.strerror or e})") from None
    return RunContext(
        cfg=cfg, run_dir=run_dir, base_dir=base_dir, device=device or cfg.device, progress=progress, _unlock=unlock
    )


def discard_unstarted_run(ctx: RunContext) -> bool:
    """Remove the run directory of a new run that stopped before any stage finished (bad input
    found by ``prepare``): a folder holding only config.yaml, run.log and an empty ``stages/``
    would look like a run in the runs directory. The error itself was on the console. A run with
    a finished stage is kept (``--resume`` continues it). Returns whether it was removed."""
    stages = ctx.run_dir / "stages"
    if stages.is_dir() and any(stages.glob("*.json")):
        return False
    shutil.rmtree(ctx.run_dir, ignore_errors=True)
    return not ctx.run_dir.exists()
