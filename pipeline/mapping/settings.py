"""Settings of full-scene mapping (the ``mapping:`` section)."""

from __future__ import annotations

from pydantic import Field

from pipeline.core.settings import Strict

MIN_WINDOW_SIZE = 16  # mapping windows (pixels per side); smaller ones spend their time on overhead


class MappingConfig(Strict):
    window_size: int = Field(default=512, ge=MIN_WINDOW_SIZE)
    workers: int = Field(default=2, ge=1)
