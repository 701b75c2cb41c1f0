"""The base of every settings section: unknown keys are errors and settings never change.

Each stage owns the settings it reads (``pipeline.inputs.settings``, ``pipeline.split.settings``, ...);
:class:`pipeline.config.RunConfig` composes them into the one object a run validates once.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
