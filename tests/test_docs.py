"""The documentation keeps up with the code: every configuration key is in the reference."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from pipeline.config.schema import RunConfig, models_config_class
from pipeline.inputs.settings import SceneConfig, SceneGlobConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _models_in(annotation: object) -> list[type[BaseModel]]:
    out = []
    todo = [annotation]
    while todo:
        a = todo.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            out.append(a)
        todo += list(typing.get_args(a))
    return out


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path a config accepts under ``model`` (``split.fractions.train``)."""
    keys = []
    for name, field in model.model_fields.items():
        path = prefix + name
        keys.append(path)
        for sub in _models_in(field.annotation):
            keys += config_keys(sub, path + ".")
    return keys


def all_config_keys() -> list[str]:
    keys = [k for k in config_keys(RunConfig) if not k.startswith(("models", "scenes."))]
    keys += ["models"] + config_keys(models_config_class(), "models.")
    for scenes in (SceneConfig, SceneGlobConfig):  # the two forms of `scenes` (a tagged union)
        keys += [f"scenes.{k}" for k in config_keys(scenes) if k.count(".") == 0]
    return sorted(set(keys))


def documented_keys(page: str) -> set[str]:
    """``heading path + row key`` for every table row under a heading naming key paths in backticks
    (a heading may name several, e.g. ``models.cnn``, ``models.resnet``; ``<model>`` matches any model)."""
    found: set[str] = set()
    prefixes = [""]
    for line in page.splitlines():
        if line.startswith("#"):
            named = re.findall(r"`([\w.<>]+)`", line)
            prefixes = [p + "." for p in named] if named else [""]
            found |= set(named)
        else:
            m = re.match(r"\|\s*`([\w.]+)`\s*\|", line)
            if m:
                found |= {p + m.group(1) for p in prefixes}
    return found


def test_the_configuration_reference_names_every_key():
    page = (DOCS / "configuration.md").read_text()
    documented = documented_keys(page)
    generic = {re.sub(r"^models\.<model>\.", "", k) for k in documented if k.startswith("models.<model>.")}
    missing = []
    for key in all_config_keys():
        model_key = re.match(r"models\.\w+\.(.+)", key)
        if key in documented or (model_key and model_key.group(1) in generic):
            continue
        missing.append(key)
    assert missing == [], f"docs/configuration.md does not describe: {', '.join(missing)}"


def test_the_check_finds_an_undocumented_key():
    page = "## `split`\n\n| key | default |\n|---|---|\n| `k` | `5` |\n"
    assert documented_keys(page) == {"split", "split.k"}
    assert "split.strategy" not in documented_keys(page)
    assert "split.strategy" in all_config_keys() and "models.cnn.epochs" in all_config_keys()
