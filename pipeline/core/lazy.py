"""Names a package re-exports from its modules, imported on first use.

A stage package (``pipeline.inputs``, ``pipeline.models``, ...) lists what it offers in one
table, ``{name: module}``; the module is imported when the name is first read. So
``import pipeline.inputs.raster`` does not import geopandas through ``pipeline.inputs``'s
other modules, and the CLI starts without scikit-learn, torch or Prefect. Inside the library,
modules import from the defining module, never through a package's table.

>>> __getattr__, __dir__ = lazy_exports(__name__, {"RasterStack": "raster"})  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import ``package.<table[name]>`` on first use.

    ``table`` maps each exported name to the module (relative to ``package``) that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__
