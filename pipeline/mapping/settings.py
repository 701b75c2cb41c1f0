"""Settings of full-scene mapping (the ``mapping:`` section) and of what a map is delivered with
(the ``outputs:`` section: minimum mapping unit, polygons, STAC catalog)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from pipeline.core.settings import Strict

MIN_WINDOW_SIZE = 16  # mapping windows (pixels per side); smaller ones spend their time on overhead


#: Pixels a map may have unless raised (``mapping.max_pixels``, ``--max-pixels``): a 63,000 px square.
#: A map this large writes 20 GB of class map and confidence; a header claiming more is more
#: often damaged or hostile (200000 x 200000 px in a 1.8 MB file) than real.
DEFAULT_MAX_PIXELS = 4_000_000_000


class MappingConfig(Strict):
    window_size: int = Field(default=512, ge=MIN_WINDOW_SIZE)
    workers: int = Field(default=2, ge=1)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)  # larger rasters are refused before mapping


#: Units an MMU may be given in -> square metres per unit (``px``: a pixel count).
AREA_UNITS = {"px": 0.0, "m2": 1.0, "m²": 1.0, "ha": 1e4, "km2": 1e6, "km²": 1e6}
_SPEC = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|m2|m²|ha|km2|km²)?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class MinimumMappingUnit:
    """A minimum mapping unit: ``value`` pixels (``unit == "px"``) or ``value`` of an area unit."""

    value: float
    unit: str = "px"

    @classmethod
    def parse(cls, spec: int | float | str) -> MinimumMappingUnit:
        """``4``, ``"4"``, ``"4px"``, ``"0.5ha"``, ``"5000 m2"``, ``"0.01km2"`` -> a unit; ValueError otherwise."""
        if isinstance(spec, bool):
            raise ValueError(f"{spec!r} is not a minimum mapping unit")
        if isinstance(spec, (int, float)):
            spec = str(spec)
        m = _SPEC.fullmatch(str(spec))
        if m is None:
            raise ValueError(
                f"{spec!r} is not a minimum mapping unit: give pixels (4, 4px) or an area (0.5ha, 5000m2, 0.01km2)"
            )
        value, unit = float(m[1]), (m[2] or "px").lower().replace("²", "2")
        if unit == "px" and (value != int(value) or value < 1):
            raise ValueError(f"{spec!r}: a minimum mapping unit in pixels is a whole number of at least 1")
        if value <= 0:
            raise ValueError(f"{spec!r}: a minimum mapping unit must be larger than 0")
        return cls(value, unit)

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"

    def pixels(self, pixel_area_m2: float) -> int:
        """The sieve threshold: clumps with fewer pixels than this are removed. For an area, the
        smallest pixel count whose area reaches the unit (``ceil(area / pixel area)``)."""
        if self.unit == "px":
            return int(self.value)
        need = self.value * AREA_UNITS[self.unit] / pixel_area_m2
        return max(1, math.ceil(need - 1e-9 * need))  # 5000 m2 of 100 m2 pixels is 50, not 51


class OutputsConfig(Strict):
    """The ``outputs:`` section: what each class map of a run (and of ``serve``) is delivered with."""

    # clumps smaller than this merged into their largest neighbour (pixels, or an area: 0.5ha, 5000m2)
    mmu: int | str | None = None
    connectivity: Literal[4, 8] = 4  # pixel neighbourhood of clumps, for the MMU and the polygons
    polygons: bool = False  # write the map (after the MMU when given) as polygons: <map>.gpkg
    stac: bool = True  # write a STAC catalog of the maps (stac/catalog.json of a run, catalog.json of an outbox)

    @field_validator("mmu", mode="before")
    @classmethod
    def _mmu(cls, v: Any) -> Any:
        if v is not None:
            MinimumMappingUnit.parse(v)  # ValueError names the problem; the loader names the key
        return v

    def minimum_mapping_unit(self) -> MinimumMappingUnit | None:
        return None if self.mmu is None else MinimumMappingUnit.parse(self.mmu)
