"""The library's entry points for Python users: run a config, read a run, map a raster.

>>> from pipeline import run_config, read_metrics
>>> run_dir = run_config("configs/demo.yaml", models=["decision_tree"], out="runs")   # doctest: +SKIP
>>> read_metrics(run_dir)["models"]["decision_tree"]["overall_accuracy"]               # doctest: +SKIP

The run is the same as ``landcover run CONFIG --engine local``: the same stages, outputs,
run directory and stage store, in this process and without Prefect. Bad input raises
:class:`~pipeline.core.errors.InputError` (one line naming the file, field or key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def run_config(
    config: str | Path,
    *,
    models: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    run_id: str | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = False,
) -> Path:
    """Run the whole pipeline on a YAML config in this process; returns the run directory.

    Parameters
    ----------
    config : path of the YAML run configuration (relative paths in it resolve against its folder).
    models : the models to run (default: every model of the config).
    overrides : ``"key.path=value"`` strings, as ``--set`` on the command line.
    out : output directory (default: the config's ``output_dir``).
    run_id : name of the run directory (default: ``name-timestamp-hash``); with ``resume=True``,
        the run to continue.
    device : device for deep models (default: the config's).
    progress : show progress bars.
    """
    from pipeline.config.loading import load_config
    from pipeline.core.errors import InputError
    from pipeline.runner.context import discard_unstarted_run, init_run_dir
    from pipeline.runner.pipeline import run_pipeline

    cfg, base_dir = load_config(config, list(overrides), list(models) if models else None)
    with init_run_dir(
        cfg, base_dir, out=Path(out) if out else None, run_id=run_id, resume=resume, device=device, progress=progress
    ) as ctx:  # holds the run directory's lock until the run ends
        try:
            return Path(run_pipeline(ctx))
        except InputError:
            if not resume:
                discard_unstarted_run(ctx)  # bad input stopped prepare: no folder that looks like a run
            raise


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """``metrics.json`` of a run directory (schema in docs/outputs.md; undefined values are ``None``)."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())
