"""Run configuration: one YAML file validated once into typed objects.

Everything downstream receives a :class:`RunConfig`; nothing re-reads YAML.
Unknown keys and bad values raise :class:`~pipeline.core.errors.InputError` whose
message names the key path (``models.cnn.epochs``) and the file.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, SerializeAsAny, Tag, create_model, field_validator, model_validator

from pipeline.core.settings import Strict
from pipeline.inputs.settings import ClassSpec, LabelConfig, RasterConfig, SceneConfig, SceneGlobConfig
from pipeline.mapping.settings import MappingConfig, OutputsConfig
from pipeline.models import registry
from pipeline.models.settings import DecisionTreeConfig, GradientBoostingConfig
from pipeline.sampling.settings import PatchConfig, SamplingConfig
from pipeline.split.settings import SplitConfig

MAX_NAME_LENGTH = 100  # run names and run ids become directory names: keep them well under NAME_MAX
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are unsigned 32-bit integers


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


SCENE_LIST_TAG, SCENE_GLOB_TAG = "<scene list>", "<scene glob>"  # union tags, left out of error locations


class ModelsBase(Strict):
    """The ``models:`` section: one optional settings field per model of the registry
    (:mod:`pipeline.models.registry`); a model is enabled when its field is set."""

    def enabled(self) -> list[str]:
        return [n for n in type(self).model_fields if getattr(self, n) is not None]


_models_classes: dict[tuple, type[ModelsBase]] = {}


def models_config_class() -> type[ModelsBase]:
    """The ``ModelsConfig`` class of the models registered now (built once per registry content)."""
    specs = registry.specs()
    key = tuple((s.name, s.config) for s in specs)
    if key not in _models_classes:
        fields: dict[str, Any] = {s.name: (s.config | None, None) for s in specs}
        _models_classes[key] = create_model("ModelsConfig", __base__=ModelsBase, **fields)
    return _models_classes[key]


def __getattr__(name: str) -> Any:
    # Derived from the registry on access: a model registered later is listed too.
    if name == "ModelsConfig":
        return models_config_class()
    if name == "MODEL_NAMES":
        return registry.model_names()
    if name == "DEEP_MODELS":
        return registry.deep_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _default_models() -> ModelsBase:
    """A config without ``models:`` runs a decision tree (the quick, readable baseline) and gradient
    boosting (the practitioner's workhorse), both on the default features (bands, indices, window
    statistics)."""
    return models_config_class()(  # type: ignore[call-arg]  # fields from the registry
        decision_tree=DecisionTreeConfig(), gradient_boosting=GradientBoostingConfig()
    )


class RunConfig(Strict):
    name: str = "run"  # prefix of run directory names: one folder name, at most 100 characters
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    output_dir: str = "reports/runs"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    rasters: RasterConfig | None = None
    labels: LabelConfig | None = None
    # several scenes instead of rasters.paths/labels.path: a list, or a glob form
    scenes: (
        Annotated[
            Annotated[list[SceneConfig], Tag(SCENE_LIST_TAG)] | Annotated[SceneGlobConfig, Tag(SCENE_GLOB_TAG)],
            Discriminator(lambda v: SCENE_LIST_TAG if isinstance(v, list) else SCENE_GLOB_TAG),
        ]
        | None
    ) = None
    classes: list[ClassSpec] = Field(min_length=2)
    patch: PatchConfig = PatchConfig()
    split: SplitConfig = SplitConfig()
    sampling: SamplingConfig = SamplingConfig()
    models: SerializeAsAny[ModelsBase] = Field(default_factory=_default_models)
    mapping: MappingConfig = MappingConfig()
    outputs: OutputsConfig = OutputsConfig()

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
