"""Run configuration: one YAML file validated once into typed objects.

Everything downstream receives a :class:`RunConfig`; nothing re-reads YAML.
Unknown keys and bad values raise :class:`~pipeline.errors.InputError` whose
message names the key path (``models.cnn.epochs``) and the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializeAsAny,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from pipeline.class_table import parse_color
from pipeline.errors import InputError

NODATA_CLASS = 255  # value written to class maps where the input has no valid data
MAX_NAME_LENGTH = 100  # run names and run ids become directory names: keep them well under NAME_MAX
MIN_WINDOW_SIZE = 16  # mapping windows (pixels per side); smaller ones spend their time on overhead
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are unsigned 32-bit integers

#: What stays whole on one side of a split (``split.group_by``; see :class:`SplitConfig`).
GroupBy = Literal["auto", "polygon", "block", "scene"]


def check_dir_name(value: str, what: str = "name") -> str:
    """``value`` if it is safe as one directory name inside an output folder, else ValueError.

    A run name or run id becomes ``<out>/<value>``: a path separator, ``..``, an absolute
    path or a leading dot (hidden folders such as ``.stage-cache``) would put the run's
    files somewhere else, and very long names fail only when the first file is written.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    bad = sorted({c for c in value if c in "/\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise ValueError(
            f"{what} {value!r} contains {', '.join(repr(c) for c in bad)}; "
            "it must be a single folder name (no path separators or control characters)"
        )
    if value.startswith(".") or value != value.strip():
        raise ValueError(f"{what} {value!r} must not start with '.' nor start or end with spaces")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RasterConfig(_Strict):
    """The image: one multi-band file, single-band files stacked in order, or (with ``dates``)
    one multi-band file per date of the same place, stacked date after date.

    With ``scenes``, the top-level ``rasters`` holds only settings every scene shares
    (``band_names``, ``bands``, ``nodata``, ...) and each scene names its own ``paths``.
    """

    paths: list[str] | None = Field(default=None, min_length=1)
    band_names: list[str] | None = None  # with dates: the names of one file's bands
    bands: list[int | str] | None = None  # selection: 1-based indices or band names (with dates: of each file)
    nodata: float | None = None  # overrides the files' own nodata value
    drop_empty_bands: bool = False  # bands with no data (or one constant value) everywhere: drop with a warning
    dates: list[str] | None = None  # one label per path (e.g. 2019-06-01); band names become "<date>:<band>"
    align_to: str | None = None  # a raster whose grid every file is warped onto (default: the first file's)

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _dates_match_paths(self) -> RasterConfig:
        if self.dates is not None:
            if self.paths is not None and len(self.dates) != len(self.paths):
                raise ValueError(
                    f"dates: {len(self.dates)} dates given for {len(self.paths)} paths; give one date per file"
                )
            dup = sorted({d for d in self.dates if self.dates.count(d) > 1})
            if dup:
                raise ValueError(f"dates: date {dup[0]!r} appears twice")
            bad = [d for d in self.dates if not d or ":" in d]
            if bad:
                raise ValueError(f"dates: {bad[0]!r} is not a usable date label (non-empty, no ':')")
        return self


class LabelConfig(_Strict):
    """Training labels: a vector file with a class field, or a label raster of class ids."""

    path: str | None = None  # required, except at the top level of a config with `scenes`
    field: str | None = None  # class name (or id) column of a vector file
    id_field: str | None = None  # optional column of class ids cross-checked against `field`
    layer: str | None = None  # layer of a multi-layer vector file
    on_unknown: Literal["error", "drop"] = "error"  # labels not in the class table: stop, or drop and report
    # a class with no usable labels (all outside the raster or on nodata): leave it out with a warning,
    # or stop the run (`landcover run --strict`)
    on_empty_class: Literal["drop", "error"] = "drop"

    @property
    def is_raster(self) -> bool:
        return Path((self.path or "").split(":")[-1]).suffix.lower() in {".tif", ".tiff", ".gtif", ".vrt", ".img"}


SCENE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"  # a file-name-safe word: scenes name map folders


class SceneConfig(_Strict):
    """One scene (a tile, a date, a place): its rasters and, optionally, its labels.

    A scene without labels is mapped but gives no training or test samples. Every scene
    shares the run's band layout and class table.
    """

    name: str
    rasters: RasterConfig
    labels: LabelConfig | None = None

    @field_validator("name")
    @classmethod
    def _file_safe(cls, v: str) -> str:
        if not re.fullmatch(SCENE_NAME, v):
            raise ValueError(f"scene name {v!r} must be letters, digits, '_', '-' or '.' (it names a map folder)")
        return v

    @model_validator(mode="after")
    def _paths_given(self) -> SceneConfig:
        if self.rasters.paths is None:
            raise ValueError(f"scene {self.name!r}: rasters.paths is required")
        if self.labels is not None and self.labels.path is None:
            raise ValueError(f"scene {self.name!r}: labels.path is required (or leave labels out)")
        return self


_SCENE_LIST, _SCENE_GLOB = "<scene list>", "<scene glob>"  # union tags, left out of error locations


class SceneGlobConfig(_Strict):
    """Scenes from a file pattern: one raster per scene, the scene named after the file's stem.

    ``labels`` is a path template where ``{name}`` stands for the scene name; scenes whose
    label file does not exist are mapped only. Shared settings come from the top-level
    ``rasters`` and ``labels``.
    """

    rasters: str = Field(min_length=1)  # e.g. images/*.tif (relative to the config file)
    labels: str | None = None  # e.g. labels/{name}.tif


class ClassSpec(_Strict):
    id: int = Field(ge=0, le=254)
    name: str = Field(min_length=1)
    color: str = "#808080"

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError(f"class name {v!r} contains control characters")
        return v

    @field_validator("color")
    @classmethod
    def _hex(cls, v: str) -> str:
        parse_color(v)
        return v.lower()

    @property
    def rgb(self) -> tuple[int, int, int]:
        return parse_color(self.color)


class PatchConfig(_Strict):
    size: int = Field(default=9, ge=1, le=65)

    @field_validator("size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"patch size must be odd so that a patch has a centre pixel, got {v}")
        return v


class SplitFractions(_Strict):
    train: float = Field(default=0.70, gt=0, lt=1)
    validation: float = Field(default=0.15, ge=0, lt=1)
    test: float = Field(default=0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum(self) -> SplitFractions:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"fractions must add up to 1, they add up to {total:g}")
        return self


class SplitFiles(_Strict):
    """A split the user brings for multi-scene runs: scenes (names or image paths), or CSV files
    listing image paths one per line, per split."""

    train: list[str] = Field(min_length=1)
    validation: list[str] = []
    test: list[str] = Field(min_length=1)


class SplitConfig(_Strict):
    strategy: Literal["blocks", "kfold", "random", "predefined"] = "blocks"
    block_size: float | None = Field(default=None, gt=0)  # map units; default derived from data
    buffer: float | None = Field(default=None, ge=0)  # map units; default (k//2 + 1/2) pixels: the test patch footprint
    fractions: SplitFractions = SplitFractions()
    k: int = Field(default=5, ge=2, le=20)  # folds for strategy kfold
    random_contrast: bool = True  # also fit on a random pixel split and report the gap
    # What stays whole on one side of the split: "auto" = polygons, except that the polygons of a
    # class with too few of them are cut into sub-blocks (polygon x block); "polygon" never cuts;
    # "block" cuts every polygon at block edges; "scene" keeps whole scenes apart.
    group_by: GroupBy = "auto"
    column: str = Field(default="split", min_length=1)  # predefined: train/validation/test column of the labels
    files: SplitFiles | None = None  # predefined: scenes (or CSV lists of images) per split

    @model_validator(mode="after")
    def _files_need_predefined(self) -> SplitConfig:
        if self.files is not None and self.strategy != "predefined":
            raise ValueError("files is a user-supplied split: set split.strategy: predefined to use it")
        return self


class SamplingConfig(_Strict):
    """Sampling of dense labels (a reference map, a dense annotation): a cap per class, drawn after
    the split, spatially balanced across blocks (see :mod:`pipeline.sampling`)."""

    # auto: on when the labels exceed auto_above_pixels or the full patch store would exceed
    # auto_above_store_mb; on: always cap; off: every labelled pixel becomes a sample.
    mode: Literal["auto", "on", "off"] = "auto"
    max_per_class: int = Field(default=20000, ge=10)  # training samples per class; validation/test in proportion
    auto_above_pixels: int = Field(default=1_000_000, ge=1)
    auto_above_store_mb: float = Field(default=2048.0, gt=0)


class FeatureConfig(_Strict):
    """Per-pixel features for the classical baselines."""

    indices: list[Literal["ndvi", "ndwi", "ndbi", "nbr"]] = []
    patch_stats: bool = False  # mean and std over the k x k window


class DecisionTreeConfig(_Strict):
    max_depth: int | None = Field(default=None, ge=1)
    min_samples_leaf: int = Field(default=1, ge=1)
    # confidence = class frequency in the leaf, or in its deepest ancestor with at least this many
    # training samples (a fully grown tree's own leaves are pure: confidence 1 everywhere)
    confidence_min_samples: int = Field(default=20, ge=1)
    features: FeatureConfig = FeatureConfig()


class RandomForestConfig(_Strict):
    n_estimators: int = Field(default=200, ge=1)
    max_depth: int | None = Field(default=None, ge=1)
    min_samples_leaf: int = Field(default=1, ge=1)
    n_jobs: int = Field(default=2, ge=1)
    features: FeatureConfig = FeatureConfig()


class SVMConfig(_Strict):
    C: list[float] = [1.0, 10.0, 100.0]
    gamma: list[float | Literal["scale"]] = ["scale"]
    max_train_samples: int = Field(default=5000, ge=10)  # cap on SVC training set size
    features: FeatureConfig = FeatureConfig()


class MaxLikelihoodConfig(_Strict):
    priors: Literal["equal", "proportional"] = "equal"
    # shrinkage of each class covariance towards a scaled identity: "auto" estimates it per class
    # (OAS; works with fewer training pixels than bands), a number in [0, 1] fixes it
    reg_param: Literal["auto"] | float = Field(default="auto")

    @field_validator("reg_param")
    @classmethod
    def _unit(cls, v: Any) -> Any:
        if v != "auto" and not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"must be 'auto' or a number from 0 to 1, got {v!r}")
        return v

    features: FeatureConfig = FeatureConfig()


class DeepConfig(_Strict):
    epochs: int = Field(default=40, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["cosine", "onecycle", "none"] = "cosine"
    patience: int = Field(default=8, ge=1)  # early stopping on validation macro-F1
    channels: int = Field(default=64, ge=4)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    class_balance: Literal["loss", "sampler", "none"] = "loss"
    amplitude_scale: tuple[float, float] = (0.9, 1.1)
    shift: int = Field(default=0, ge=0)  # max centre shift (pixels) inside the same labelled region
    num_workers: int = Field(default=0, ge=0)


class CNNConfig(DeepConfig):
    pass


class ResNetConfig(DeepConfig):
    stochastic_depth: float = Field(default=0.1, ge=0, lt=1)  # drop prob of the deepest block


class ModelsBase(_Strict):
    """The ``models:`` section: one optional settings field per model of the registry
    (:mod:`pipeline.models.registry`); a model is enabled when its field is set."""

    def enabled(self) -> list[str]:
        return [n for n in type(self).model_fields if getattr(self, n) is not None]


_models_classes: dict[tuple, type[ModelsBase]] = {}


def models_config_class() -> type[ModelsBase]:
    """The ``ModelsConfig`` class of the models registered now (built once per registry content)."""
    from pipeline.models import registry

    specs = registry.specs()
    key = tuple((s.name, s.config) for s in specs)
    if key not in _models_classes:
        fields: dict[str, Any] = {s.name: (s.config | None, None) for s in specs}
        _models_classes[key] = create_model("ModelsConfig", __base__=ModelsBase, **fields)
    return _models_classes[key]


def __getattr__(name: str) -> Any:
    # Derived from the registry on access (the registry imports this module, so not at import time).
    from pipeline.models import registry

    if name == "ModelsConfig":
        return models_config_class()
    if name == "MODEL_NAMES":
        return registry.model_names()
    if name == "DEEP_MODELS":
        return registry.deep_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _default_models() -> ModelsBase:
    return models_config_class()(decision_tree=DecisionTreeConfig())  # type: ignore[call-arg]  # fields from the registry


class MappingConfig(_Strict):
    window_size: int = Field(default=512, ge=MIN_WINDOW_SIZE)
    workers: int = Field(default=2, ge=1)


class RunConfig(_Strict):
    name: str = "run"  # prefix of run directory names: one folder name, at most 100 characters
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    output_dir: str = "reports/runs"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    rasters: RasterConfig | None = None
    labels: LabelConfig | None = None
    # several scenes instead of rasters.paths/labels.path: a list, or a glob form
    scenes: (
        Annotated[
            Annotated[list[SceneConfig], Tag(_SCENE_LIST)] | Annotated[SceneGlobConfig, Tag(_SCENE_GLOB)],
            Discriminator(lambda v: _SCENE_LIST if isinstance(v, list) else _SCENE_GLOB),
        ]
        | None
    ) = None
    classes: list[ClassSpec] = Field(min_length=2)
    patch: PatchConfig = PatchConfig()
    split: SplitConfig = SplitConfig()
    sampling: SamplingConfig = SamplingConfig()
    models: SerializeAsAny[ModelsBase] = Field(default_factory=_default_models)
    mapping: MappingConfig = MappingConfig()

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: Any) -> Any:
        return v if isinstance(v, ModelsBase) else models_config_class().model_validate(v)

    @field_validator("name")
    @classmethod
    def _dir_name(cls, v: str) -> str:
        return check_dir_name(v, "run name")

    @model_validator(mode="before")
    @classmethod
    def _scenes_inherit(cls, raw: Any) -> Any:
        """Each listed scene inherits the top-level ``rasters``/``labels`` settings it does not set
        (a scene's own keys win), so that the resolved config spells every scene out in full."""
        if not isinstance(raw, dict) or not isinstance(raw.get("scenes"), list):
            return raw
        rd, ld = raw.get("rasters") or {}, raw.get("labels") or {}
        if not isinstance(rd, dict) or not isinstance(ld, dict):
            return raw
        scenes = []
        for s in raw["scenes"]:
            if isinstance(s, dict):
                s = dict(s)
                r = s.get("rasters")
                r = {"paths": r} if isinstance(r, (str, list)) else r
                if isinstance(r, dict):
                    s["rasters"] = {**{k: v for k, v in rd.items() if k != "paths"}, **r}
                lab = s.get("labels")
                lab = {"path": lab} if isinstance(lab, str) else lab
                if isinstance(lab, dict):
                    s["labels"] = {**{k: v for k, v in ld.items() if k != "path"}, **lab}
            scenes.append(s)
        return {**raw, "scenes": scenes}

    @model_validator(mode="after")
    def _rasters_or_scenes(self) -> RunConfig:
        if self.scenes is None:
            for key, sub in (("rasters", "paths"), ("labels", "path")):
                section = getattr(self, key)
                if section is None:
                    raise ValueError(f"missing required key '{key}' (or list several scenes under 'scenes')")
                if getattr(section, sub) is None:
                    raise ValueError(f"missing required key '{key}.{sub}'")
            return self
        for key, sub in (("rasters", "paths"), ("labels", "path")):
            section = getattr(self, key)
            if section is not None and getattr(section, sub) is not None:
                raise ValueError(
                    f"{key}.{sub}: with 'scenes', give each scene's {key} under scenes "
                    f"(the top-level '{key}' holds only settings every scene shares)"
                )
        if isinstance(self.scenes, list):
            if not self.scenes:
                raise ValueError("scenes: the list is empty")
            names = [s.name for s in self.scenes]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"scenes: duplicate scene name {dup[0]!r}")
            if all(s.labels is None for s in self.scenes):
                raise ValueError("scenes: no scene has labels; at least one scene needs training labels")
        return self

    @model_validator(mode="after")
    def _classes_unique(self) -> RunConfig:
        ids = [c.id for c in self.classes]
        names = [c.name for c in self.classes]
        for what, vals in (("id", ids), ("name", names)):
            dup = sorted((v for v, n in Counter(vals).items() if n > 1), key=str)
            if dup:
                raise ValueError(f"classes: duplicate class {what} {dup[0]!r}")
        # Names that differ only by case end up as the same file or legend entry on case-insensitive
        # file systems and in GIS software; refuse them instead of letting one shadow the other.
        folded: dict[str, str] = {}
        for n in names:
            other = folded.setdefault(n.casefold(), n)
            if other != n:
                raise ValueError(f"classes: class names {other!r} and {n!r} differ only by case")
        if not self.models.enabled():
            raise ValueError("models: no model enabled")
        return self

    def config_hash(self) -> str:
        """Stable hash of the resolved configuration (same config, same hash, any process)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class DuplicateKeyError(yaml.YAMLError):
    """A mapping in the YAML names the same key twice (PyYAML would silently keep the last)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges; explicit keys may override
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(f"line {line}: duplicate key {key!r} (first given on line {seen[key]})")
                seen[key] = line
            except TypeError:  # unhashable key: the base class reports it
                continue
        return super().construct_mapping(node, deep=deep)


def _set_path(raw: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise InputError(f"--set {dotted}: {k!r} is not a section")
        node = nxt
    node[keys[-1]] = value


def _iso_date(v: Any) -> str:
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    raise TypeError(f"{type(v).__name__} is not a config value")


def _input_path(raw: Any, loc: tuple) -> tuple:
    """The part of a pydantic error location that addresses the user's input.

    Pydantic appends the name of the union member it tried (``int``, ``literal['scale']``)
    to the location; those parts do not exist in the input and are dropped.
    """
    out: list = []
    node = raw
    for part in loc:
        if part in (_SCENE_LIST, _SCENE_GLOB):  # the tags of the two forms of `scenes`
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            node = None  # a missing key: still part of the path ("missing required key")
        else:
            continue
        out.append(part)
    return tuple(out)


def _problem(err: ErrorDetails, loc: str) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}'"
    if err["type"] == "missing":
        return f"missing required key '{loc}'"
    if loc == "(top level)":  # a whole-config rule: its message names the keys itself
        return err["msg"].removeprefix("Value error, ")
    return f"{loc}: {err['msg'].removeprefix('Value error, ')}"


def _format_validation_error(
    err: ValidationError, source: str, raw: Any = None, overrides: list[str] | None = None
) -> str:
    """Every problem of a config in one line, each with its key path.

    Alternatives of one union that all failed (``gamma`` must be a number or 'scale') are one
    problem: their messages are joined with "or". A problem that a ``--set`` override brought in
    names it: the key is not in the file, and the user would look for it there.
    """
    set_by = {item.partition("=")[0].strip(): item for item in overrides or []}
    problems: dict[str, list[str]] = {}
    # rasters/labels are required unless the config lists scenes: a rule of the whole config,
    # reported here like any missing key so that it is listed with the other problems.
    seeded = [k for k in ("rasters", "labels") if isinstance(raw, dict) and "scenes" not in raw and k not in raw]
    for k in seeded:
        problems[k] = [f"missing required key '{k}'"]
    for e in err.errors():
        if not e["loc"] and any(
            e["msg"].removeprefix("Value error, ").startswith(f"missing required key '{k}'") for k in seeded
        ):
            continue
        path = _input_path(raw, tuple(e["loc"])) if raw is not None else tuple(e["loc"])
        loc = ".".join(str(p) for p in path) or "(top level)"
        msg = _problem(e, loc)
        item = next((v for k, v in set_by.items() if loc == k or loc.startswith(k + ".")), None)
        if item is not None:
            msg += f" (from --set {item})"
        if loc in problems:
            if e["type"] not in ("extra_forbidden", "missing"):
                extra = e["msg"].removeprefix("Value error, ")
                if extra not in problems[loc]:
                    problems[loc].append(extra)
        else:
            problems[loc] = [msg]
    parts = [items[0] + "".join(f" or {m[0].lower()}{m[1:]}" for m in items[1:]) for items in problems.values()]
    if len(parts) == 1:
        return f"{source}: {parts[0]}"
    return f"{source}: {len(parts)} problems: " + "; ".join(parts)


def parse_config(
    raw: dict[str, Any],
    source: str = "<config>",
    overrides: list[str] | None = None,
    models: list[str] | None = None,
) -> RunConfig:
    """Validate a raw mapping (e.g. parsed YAML) into a :class:`RunConfig`.

    ``overrides`` are ``key.path=value`` strings whose value is parsed as YAML;
    ``models`` keeps only those models (enabling any with default settings).
    """
    # Deep copy, and rejects non-JSON YAML oddities early; YAML dates (rasters.dates: [2019-06-01])
    # stay the ISO strings the user wrote.
    try:
        raw = json.loads(json.dumps(raw, default=_iso_date))
    except (TypeError, ValueError) as e:
        raise InputError(f"{source}: {e}") from None
    for item in overrides or []:
        if "=" not in item:
            raise InputError(f"--set {item!r}: expected key.path=value")
        key, _, val = item.partition("=")
        try:
            value = yaml.load(val, Loader=_UniqueKeyLoader)
        except yaml.YAMLError:
            raise InputError(
                f"--set {item!r}: the value is not valid YAML (quote a text value that starts with [, {{, * or &)"
            ) from None
        _set_path(raw, key.strip(), value)
    if models is not None:
        from pipeline.models import registry

        names = registry.model_names()
        unknown = [m for m in models if m not in names]
        if unknown:
            raise InputError(f"--models: unknown model {unknown[0]!r}; choose from {', '.join(names)}")
        current = raw.get("models") or {}
        raw["models"] = {m: (current.get(m) or {}) for m in models}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise InputError(_format_validation_error(err, source, raw, overrides)) from None


def load_config(
    path: str | Path, overrides: list[str] | None = None, models: list[str] | None = None
) -> tuple[RunConfig, Path]:
    """Read and validate a YAML config. Returns the config and the directory
    relative paths in it are resolved against (the config file's folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{e.object[e.start]:02x}); save the config as UTF-8"
        ) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKeyError as e:
        raise InputError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}:{where}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a config must be a mapping of keys to values")
    return parse_config(raw, str(path), overrides, models), path.resolve().parent


def dump_config(cfg: RunConfig) -> str:
    """The resolved configuration as YAML (every default spelled out; disabled models omitted)."""
    d = cfg.model_dump(mode="json")
    d["models"] = {k: v for k, v in d["models"].items() if v is not None}
    return yaml.safe_dump(d, sort_keys=False)
