"""The base of every settings section: unknown keys are errors and settings never change.

Each stage owns the settings it reads (``pipeline.inputs.settings``, ``pipeline.split.settings``, ...);
:class:`pipeline.config.RunConfig` composes them into the one object a run validates once.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _admits(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field annotated ``annotation`` takes values of one of ``kinds`` (directly, in a
    union or ``Annotated``, as a literal, or as ``Any``)."""
    if annotation in kinds or annotation is Any or annotation is object:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _admits(typing.get_args(annotation)[0], kinds)
    if origin in (typing.Union, types.UnionType):
        return any(_admits(a, kinds) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return any(isinstance(a, kinds) for a in typing.get_args(annotation))
    return False


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        # Pydantic's lax mode reads YAML's true/false as 1/0 for a number: `seed: true` would be
        # seed 1 without a word. A value of the wrong kind is an error naming its key instead.
        if isinstance(v, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and not _admits(field.annotation, (bool,)):
                what = "a number" if _admits(field.annotation, (int, float)) else "a value of this setting's type"
                raise ValueError(f"expected {what}, not {str(v).lower()}")
        return v
