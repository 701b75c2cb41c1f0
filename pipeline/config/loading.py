"""Reading a config: YAML (duplicate keys refused), ``--set`` overrides, ``--models``, and every
validation problem in one line that names its key path and the file."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pipeline.config.schema import SCENE_GLOB_TAG, SCENE_LIST_TAG, RunConfig
from pipeline.core.errors import InputError
from pipeline.models import registry


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
        if part in (SCENE_LIST_TAG, SCENE_GLOB_TAG):  # the tags of the two forms of `scenes`
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
