"""The dispatch points from the library to the layers above it, ``flows`` and ``bench``.

``pipeline`` never imports ``flows`` or ``bench`` at module level (tests/test_layers.py checks
it): the CLI names them here and imports them only when a command needs them, through
:func:`flow_entry_point`; this is the one module of ``pipeline`` that imports them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]  # pipeline/cli/dispatch.py -> the checkout

# Modules with a ``register(subparsers)`` function adding their subcommands:
SUBCOMMAND_MODULES = ("pipeline.cli.assess", "flows.serve")
# ``landcover bench NAME``: the benchmark's ``main(argv)``, run from the repository's bench/
# folder (benchmarks are not installed as a package: they need the repository's data and reports).
BENCHMARKS = {
    "accuracy": "bench.accuracy:main",
    "baselines": "bench.baselines:main",
    "deep": "bench.deep:main",
    "deep_accuracy": "bench.deep_accuracy:main",
    "engines": "bench.engines:main",
    "scale": "bench.scale:main",
    "scale_mem": "bench.scale_mem:main",
    "scenes": "bench.scenes:main",
}


def flow_entry_point(target: str) -> Callable:
    """``"package.module:function"`` of a layer above the library -> the function (imported now).

    ``bench`` is not an installed package: its modules are imported from the repository
    checkout this package runs from (an editable install or ``PYTHONPATH``).
    """
    module, _, name = target.partition(":")
    if module.split(".")[0] == "bench" and importlib.util.find_spec("bench") is None:
        if not (REPO_ROOT / "bench").is_dir():
            raise InputError(
                f"landcover bench: the benchmarks live in the repository's bench/ folder, "
                f"not found next to {Path(__file__).parent}; run from a checkout (pip install -e .)"
            )
        sys.path.insert(0, str(REPO_ROOT))
    return getattr(importlib.import_module(module), name)


def cmd_bench(args: argparse.Namespace) -> int:
    return int(flow_entry_point(BENCHMARKS[args.which])(args.rest) or 0)


def add_bench_command(sub: Any) -> None:
    """Add ``landcover bench`` to an argparse subparsers object."""
    p = sub.add_parser("bench", help="run a benchmark (writes reports/bench/*.json)")
    p.add_argument("which", choices=sorted(BENCHMARKS), help="which benchmark")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see landcover bench WHICH -h)")
    p.set_defaults(func=cmd_bench)
