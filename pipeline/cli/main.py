"""The ``landcover`` command line.

Exit codes: 0 done; 2 bad input (:class:`~pipeline.core.errors.InputError`: one line on stderr,
``--debug`` shows the traceback); 3 the run finished but a model failed (named on stderr).
Bad input prints one line and exits with
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import InputError

if TYPE_CHECKING:
    from pipeline.inputs.raster import RasterStack

# Logger naming rule: every module logs to ``logging.getLogger(__name__)``; the CLI sets the
# level of the packages' parent loggers (Prefect's logging setup leaves the root at WARNING).
log = logging.getLogger(__name__)
APP_LOGGERS = ("pipeline", "flows")
REPO_ROOT = Path(__file__).resolve().parents[2]

# The dispatch points to the layers above the library. ``pipeline`` never imports ``flows`` or
# ``bench`` at module level (tests/test_layers.py checks it): the CLI names them here and
# imports them only when a command needs them.
# Modules with a ``register(subparsers)`` function adding their subcommands:
SUBCOMMAND_MODULES = ("pipeline.cli.assess", "flows.serve")
# ``landcover bench NAME``: the benchmark's ``main(argv)``, run from the repository's bench/
# folder (benchmarks are not installed as a package: they need the repository's data and reports).
BENCHMARKS = {
    "baselines": "bench.baselines:main",
    "deep": "bench.deep:main",
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


def demo_config_path() -> Path:
    p = REPO_ROOT / "configs" / "demo.yaml"
    if not p.exists():
        raise InputError(f"{p}: demo config not found (install the project from its repository with `make demo`)")
    return p


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="output directory (default: the config's output_dir)")
    p.add_argument("--models", help="comma-separated models to run, e.g. decision_tree,cnn")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (YAML syntax), repeatable",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        help="device for deep models (default: the config's device, auto)",
    )
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run in its own directory")
    p.add_argument("--run-id", help="name of a new run directory (default: name-timestamp-hash)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop when a class has no usable labels "
        "(same as --set labels.on_empty_class=error; default: leave it out with a warning)",
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the flow's tasks on this existing Dask cluster "
        "(scheduler address, e.g. tcp://10.0.0.5:8786) through prefect-dask",
    )
    p.add_argument(
        "--engine",
        choices=["prefect", "local"],
        default="prefect",
        help="prefect: a Prefect flow run (a temporary local server unless PREFECT_API_URL is set); "
        "local: the same stages, outputs and caching in this process, without Prefect "
        "(no server start-up; models run one after the other) (default: %(default)s)",
    )


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr
    )
    for noisy in ("rasterio", "fiona", "pyogrio", "matplotlib", "PIL", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _hide_routine_states(record: logging.LogRecord) -> bool:
    """Console filter: drop Prefect's "Finished in state Completed()" of every task and sub-flow
    (run.log keeps them; failures and other states still show)."""
    return not (
        record.name.startswith(("prefect.task_runs", "prefect.flow_runs"))
        and record.getMessage().startswith("Finished in state Completed")
    )


def quiet_console(hide_input_errors: bool = True) -> None:
    """Filter the console handlers of the root logger (Prefect's included) for a command-line run."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.addFilter(_hide_routine_states)
            if hide_input_errors:
                h.addFilter(_hide_input_errors)


def _hide_input_errors(record: logging.LogRecord) -> bool:
    """Console filter: drop engine records about an InputError, and Prefect's crash reports
    after a Ctrl-C or SIGTERM (run.log keeps them in full)."""
    from pipeline.core.cancel import cancel_requested

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, InputError) or "InputError" in record.getMessage():
        return False
    if cancel_requested() and record.levelno >= logging.WARNING:
        return False  # the stop is reported once, by main(); the engine's view of it goes to run.log
    return True


def execute_run(config_path: Path, args: argparse.Namespace) -> Path:
    """Validate the config, check the services the run needs, prepare the run directory and run
    the pipeline: as a Prefect flow run (``flows.pipeline.landcover_pipeline``; ephemeral mode
    unless PREFECT_API_URL is set), or with ``--engine local`` in this process
    (:func:`pipeline.runner.run.run_pipeline`: same stages, outputs and stage store). Returns the run directory."""
    from pipeline.cli.preflight import check_run_services
    from pipeline.config import load_config
    from pipeline.models import registry
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_pipeline

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if getattr(args, "strict", False):
        args.overrides = [*args.overrides, "labels.on_empty_class=error"]
    cfg, base_dir = load_config(config_path, args.overrides, models)
    if any(registry.get(m).deep for m in cfg.models.enabled()):
        from pipeline.models.device import select_device

        select_device(args.device or cfg.device)  # an unavailable --device fails now, not after preparation
    engine = getattr(args, "engine", "prefect")
    check_run_services(engine, getattr(args, "dask", None))  # before the run directory exists
    ctx = init_run_dir(
        cfg,
        base_dir,
        out=args.out,
        run_id=args.resume or args.run_id,
        resume=bool(args.resume),
        device=args.device,
        progress=not args.no_progress,
    )
    # imported before the run.log handler is added: Prefect's logging setup resets the root logger
    landcover_pipeline = flow_entry_point("flows.pipeline:landcover_pipeline") if engine == "prefect" else None
    # main() reports bad input as one line; Prefect's engine would also log it with a traceback.
    quiet_console(hide_input_errors=not getattr(args, "debug", False))
    for noisy in ("httpx", "httpcore"):  # Prefect's API client logs every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    level = (
        logging.DEBUG if logging.getLogger().level == logging.DEBUG or getattr(args, "debug", False) else logging.INFO
    )
    for name in APP_LOGGERS:
        logging.getLogger(name).setLevel(level)
    handler = logging.FileHandler(ctx.run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        log.info("run directory: %s", ctx.run_dir)
        if landcover_pipeline is None:
            run_dir = run_pipeline(ctx)
        else:
            from flows.ephemeral import start_tied_server

            start_tied_server()  # Prefect's temporary server, unable to outlive this process
            run_dir = Path(
                landcover_pipeline(
                    config_path=str(config_path),
                    models=models,
                    overrides=list(args.overrides),
                    out=str(args.out) if args.out else None,
                    run_id=ctx.run_dir.name,
                    resume=True,
                    device=args.device,
                    progress=not args.no_progress,
                    dask_address=getattr(args, "dask", None),
                )
            )
    except BaseException as e:
        # Ctrl-C, SIGTERM (Prefect's own SIGTERM handler raises its TerminationSignal during a flow)
        from pipeline.core.cancel import Interrupted, cancel_signal

        if isinstance(e, KeyboardInterrupt) or type(e).__name__ == "TerminationSignal":
            signum = getattr(e, "signum", None) or getattr(e, "signal", None) or cancel_signal()
            log.info("interrupted by %s; finished stages are kept", signal_name(signum))
            raise Interrupted(signum, run_id=ctx.run_dir.name) from None
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    _print_summary(run_dir)
    return run_dir


def _print_summary(run_dir: Path) -> None:
    import json

    m = json.loads((run_dir / "metrics.json").read_text())
    print(f"\nRun directory: {run_dir}")
    print(f"{'model':<16}{'OA':>7}{'kappa':>8}{'macroF1':>9}{'OA random':>11}")
    for name, f in (m.get("failed_models") or {}).items():
        print(f"{name:<16}failed in {f['stage']}: {f['reason']}")

    def num(v: float | None, width: int) -> str:  # undefined metrics are null: shown as "–"
        return f"{v:>{width}.3f}" if v is not None else f"{'–':>{width}}"

    for name, r in m["models"].items():
        rnd = m.get("random_split_contrast", {}).get(name, {}).get("overall_accuracy_random")
        print(
            f"{name:<16}{num(r.get('overall_accuracy'), 7)}{num(r.get('kappa'), 8)}{num(r.get('macro_f1'), 9)}"
            f"{num(rnd, 11)}"
        )
    ev = m.get("evidence") or {}
    if ev.get("leakage"):
        print("Accuracy inflated by spatial leakage: " + "; ".join(ev.get("leakage_reasons") or []))
    if ev.get("conclusive") is False:
        print("Evaluation inconclusive (no best model): " + "; ".join(ev.get("reasons") or []))
    print(f"Report: {run_dir / 'report.html'}")


EXIT_MODEL_FAILED = 3  # the run finished, but at least one model failed (see metrics.json "failed_models")


def _exit_code(run_dir: Path) -> int:
    """0, or 3 with one line on stderr naming every model that failed, its stage and why."""
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    failed = metrics.get("failed_models") or {}
    if not failed:
        return 0
    what = "; ".join(f"{m} ({f['stage']}: {f['reason']})" for m, f in failed.items())
    rest = "the others were reported" if metrics.get("models") else "no model was evaluated"
    print(f"landcover: {len(failed)} model(s) failed, {rest}: {what}", file=sys.stderr)
    return EXIT_MODEL_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    return _exit_code(execute_run(args.config, args))


def cmd_demo(args: argparse.Namespace) -> int:
    return _exit_code(execute_run(demo_config_path(), args))


def _dask_client(address: str | None) -> AbstractContextManager[Any]:
    """A ``distributed.Client`` connected to ``address`` (a context manager), or a null context."""
    from contextlib import nullcontext

    if not address:
        return nullcontext(None)
    try:
        from distributed import Client
    except ImportError as e:
        raise InputError(f"--dask needs the distributed package ({e})") from None
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as e:
        raise InputError(f"--dask {address}: cannot reach the Dask scheduler ({e})") from None


def expand_rasters(items: list[Path]) -> list[Path]:
    """``--raster`` arguments with glob patterns (``tiles/*.tif``) expanded in sorted order."""
    import glob

    out: list[Path] = []
    for it in items:
        if glob.has_magic(str(it)):
            hits = sorted(Path(p) for p in glob.glob(str(it)) if Path(p).is_file())
            if not hits:
                raise InputError(f"--raster {it}: no file matches")
            out += hits
        else:
            out.append(Path(it))
    return out


def map_inputs(paths: list[Path], n_model_bands: int, dates: list[str] | None) -> list[list[Path]]:
    """Group ``--raster`` files into the images to map: one stack, or one map per file.

    The files form one image when ``--dates`` is given, or when they are single-band files,
    as many as the model has bands (bands of one scene, as in a config's ``rasters.paths``);
    otherwise every file (a multi-band raster, a VRT) is its own scene with its own map.
    """
    import rasterio

    if dates is not None or len(paths) == 1:
        return [paths]
    counts = []
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: raster file not found")
        try:
            with rasterio.open(p) as ds:
                counts.append(ds.count)
        except rasterio.errors.RasterioIOError as e:
            raise InputError(f"{p}: not a readable raster ({str(e).splitlines()[0]})") from None
    if all(c == 1 for c in counts) and len(paths) == n_model_bands > 1:
        return [paths]
    return [[p] for p in paths]


def cmd_map(args: argparse.Namespace) -> int:
    from pipeline.inputs.value_range import check_stack
    from pipeline.mapping.classify import classify_raster, open_for_model
    from pipeline.mapping.settings import MIN_WINDOW_SIZE
    from pipeline.models.registry import load_model

    if args.window_size < MIN_WINDOW_SIZE:
        raise InputError(f"--window-size {args.window_size}: must be at least {MIN_WINDOW_SIZE} pixels")
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: must be at least 1")

    model = load_model(args.model, device=args.device or "auto")
    names = args.band_names.split(",") if args.band_names else None
    dates = [d.strip() for d in args.dates.split(",")] if args.dates else None
    want = list(model.meta.band_names)
    groups = map_inputs(expand_rasters(args.raster), len(want), dates)
    out = Path(args.out)
    if len(groups) > 1 or out.is_dir():
        # One map per input, named after it, in the folder --out (and --confidence).
        stems = [g[0].stem for g in groups]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise InputError(f"--raster: several inputs are named {dup[0]!r}; their maps would overwrite each other")
        if out.suffix.lower() in (".tif", ".tiff") and not out.is_dir():
            hint = ""
            if dates is None and any(":" in b for b in want):  # <date>:<band> names: a model of a date stack
                hint = (
                    f"; or, if they are the dates of one image (the model's bands are {want[0]}, ...), "
                    "stack them with --dates D1,D2,..."
                )
            raise InputError(f"--out {out}: {len(groups)} rasters give {len(groups)} maps; name a folder{hint}")
        targets = [
            (
                g,
                out / f"{g[0].stem}.tif",
                Path(args.confidence) / f"{g[0].stem}_confidence.tif" if args.confidence else None,
            )
            for g in groups
        ]
    else:
        targets = [(groups[0], out, args.confidence)]
    value_range = getattr(model.meta, "value_range", None)

    def open_input(paths: list[Path]) -> RasterStack:
        """One input opened as the model needs it (bands, nodata, dates): checked and mapped alike."""
        return open_for_model(
            paths,
            want,
            band_names=names,
            nodata=args.nodata,
            model_nodata=getattr(model.meta, "nodata", None),
            dates=dates,
        )

    if args.strict and value_range:  # every input checked before any map is written: a stop leaves none behind
        for paths, _, _ in targets:
            with open_input(paths) as stack:
                problem = check_stack(stack, value_range)
            if problem:
                raise InputError(problem)
    with _dask_client(args.dask) as client:
        for paths, target, conf in targets:  # one input after the other: memory follows one window set
            with open_input(paths) as stack:
                problem = None if args.strict else check_stack(stack, value_range)
                if problem:
                    log.warning("%s", problem)
                res = classify_raster(
                    model,
                    stack,
                    target,
                    confidence_path=conf,
                    window_size=args.window_size,
                    workers=args.workers,
                    progress=not args.no_progress,
                    client=client,
                )
            where = f", windows on {len(res['workers'])} Dask worker(s)" if args.dask else ""
            print(f"wrote {res['path']} ({res['mpx_per_s']:.2f} Mpx/s{where})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    return int(flow_entry_point(BENCHMARKS[args.which])(args.rest) or 0)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, when it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or action.option_strings == []
            or default in (None, False, [], argparse.SUPPRESS)
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *a: Any, **k: Any) -> None:
        k.setdefault("formatter_class", HelpFormatter)
        super().__init__(*a, **k)


def build_parser() -> argparse.ArgumentParser:
    from pipeline import __version__

    ap = _Parser(prog="landcover", description="Land-cover maps with spatially honest accuracy.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="run the pipeline on a config")
    p.add_argument("config", type=Path, metavar="CONFIG", help="run configuration (YAML; see configs/)")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the pipeline on the embedded North Carolina Landsat 7 scene")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("map", help="classify rasters with a saved model (one map per input)")
    p.add_argument("--model", required=True, type=Path, help="saved model (models/<model>.skops or .pt of a run)")
    p.add_argument(
        "--raster",
        required=True,
        type=Path,
        nargs="+",
        help="rasters to map (multi-band files, VRTs or glob patterns such as 'tiles/*.tif': one map "
        "each), or the single-band files of one image, or with --dates one file per date",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the map (one input), or a folder for one <input stem>.tif per input (COGs, with "
        ".aux.xml/.qml/.clr sidecars naming the classes)",
    )
    p.add_argument(
        "--confidence", type=Path, help="also write the confidence raster here (a folder for several inputs)"
    )
    p.add_argument(
        "--dates",
        help="comma-separated dates: the rasters are one multi-band file per date of one "
        "scene, stacked as in training (rasters.dates)",
    )
    p.add_argument("--band-names", help="comma-separated band names of the raster")
    p.add_argument(
        "--nodata",
        type=float,
        help="nodata value of every band (default: the one the model was trained with, else the file's own)",
    )
    p.add_argument(
        "--window-size",
        type=int,
        default=512,
        help="pixels per side of the windows read and classified at a time (memory grows with its square)",
    )
    p.add_argument("--workers", type=int, default=2, help="windows classified in parallel")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="device for deep models")
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="classify the windows as tasks on this Dask cluster "
        "(scheduler address, e.g. tcp://10.0.0.5:8786); the workers must see the raster's path",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop (exit 2) instead of warning when the input's "
        "values or data type clearly differ from the model's training pixels",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("bench", help="run a benchmark (writes reports/bench/*.json)")
    p.add_argument("which", choices=sorted(BENCHMARKS), help="which benchmark")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see landcover bench WHICH -h)")
    p.set_defaults(func=cmd_bench)

    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return ap


def _one_line(msg: str) -> str:
    return " ".join(msg.split()) or "(no message)"


def _os_error_exit_code(e: OSError) -> int | None:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return 4
    if e.errno in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOENT,
        errno.EEXIST,
    ):
        return 2
    return None


def _describe_os_error(e: OSError) -> str:
    what = e.strerror or str(e)
    return f"{e.filename}: {what}" if e.filename else what


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def main(argv: list[str] | None = None) -> int:
    from pipeline.core import cancel as cancel

    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    # Prefect runs offline by default: no telemetry from a command-line tool unless asked for,
    # and a generous start-up time for the temporary server on busy machines.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    _setup_logging(debug)
    cancel.reset()
    restore_signals = cancel.install_signal_handlers()
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except InputError as e:
        if debug:
            raise
        print(f"landcover: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # The environment, not the code: a read-only or full output folder, a name the file
        # system refuses. One line naming the file; anything else keeps its traceback.
        code = _os_error_exit_code(e)
        if debug or code is None:
            raise
        print(f"landcover: error: {_one_line(_describe_os_error(e))}", file=sys.stderr)
        return code
    except KeyboardInterrupt as e:
        # Ctrl-C or SIGTERM: one line, the shell's exit code (130 / 143), finished stages kept.
        signum = getattr(e, "signum", None) or cancel.cancel_signal()
        run_id = getattr(e, "run_id", None)
        print(
            f"landcover: interrupted; resume with --resume {run_id}" if run_id else "landcover: interrupted",
            file=sys.stderr,
        )
        return 128 + int(signum)
    finally:
        restore_signals()


def _exit(code: int) -> None:
    """Exit the process. After an interrupt, run the exit hooks (log flush, stopping Prefect's
    server) and leave without the interpreter's teardown of torch, GDAL and Prefect's threads,
    which can take longer than the user is willing to wait for a stop they asked for."""
    if code in (130, 143):
        import atexit

        sys.stdout.flush()
        sys.stderr.flush()
        # Flush log handlers while Prefect's server still runs: its API log handler would
        # otherwise wait 5 s at the very end for a server that is gone.
        logging.shutdown()
        atexit._run_exitfuncs()
        os._exit(code)
    sys.exit(code)


def console_main() -> None:
    """The ``landcover`` console script."""
    _exit(main())


if __name__ == "__main__":
    console_main()
