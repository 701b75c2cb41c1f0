"""``landcover run`` and ``landcover demo``: run the pipeline on a config, print its summary, and
exit with code 3 when a model failed."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.console import APP_LOGGERS, quiet_console, show_progress
from pipeline.cli.dispatch import REPO_ROOT, flow_entry_point
from pipeline.cli.preflight import ENGINES, check_run_services, choose_engine, prefect_api_url
from pipeline.core.errors import InputError
from pipeline.core.logs import run_log_handler

log = logging.getLogger(__name__)


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
    p.add_argument(
        "--no-progress", action="store_true", help="hide progress bars (shown only when stderr is a terminal)"
    )
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
        choices=list(ENGINES),
        default="auto",
        help="auto: prefect when a Prefect API is configured (PREFECT_API_URL or the active Prefect profile) "
        "or --dask is given, else local; "
        "prefect: a Prefect flow run (a temporary local server unless PREFECT_API_URL is set); "
        "local: the same stages, outputs and stage store in this process, without Prefect "
        "(no server start-up; models run one after the other) (default: %(default)s)",
    )


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def execute_run(config_path: Path, args: argparse.Namespace) -> Path:
    """Validate the config, check the services the run needs, prepare the run directory and run
    the pipeline: as a Prefect flow run (``flows.pipeline.landcover_pipeline``; ephemeral mode
    unless PREFECT_API_URL is set), or in this process (:func:`pipeline.runner.pipeline.run_pipeline`:
    same stages, outputs and stage store). ``--engine auto`` (the default) takes Prefect only when a
    Prefect API is configured or ``--dask`` is given (:func:`~pipeline.cli.preflight.choose_engine`):
    a temporary server would cost a small run more than its own work. Returns the run directory."""
    from pipeline.config.loading import load_config
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
    engine, why = choose_engine(
        getattr(args, "engine", "auto"),
        getattr(args, "dask", None),
        prefect_api_url() if getattr(args, "engine", "auto") == "auto" else None,
    )
    check_run_services(engine, getattr(args, "dask", None))  # before the run directory exists
    progress = show_progress(args.no_progress)
    ctx = init_run_dir(
        cfg,
        base_dir,
        out=args.out,
        run_id=args.resume or args.run_id,
        resume=bool(args.resume),
        device=args.device,
        progress=progress,
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
    handler = run_log_handler(ctx.run_dir / "run.log")
    logging.getLogger().addHandler(handler)
    bad_input = False
    try:
        log.info("run directory: %s", ctx.run_dir)
        log.info("engine: %s (%s)", engine, why)
        if landcover_pipeline is None:
            run_dir = run_pipeline(ctx)
        else:
            start_tied_server = flow_entry_point("flows.ephemeral:start_tied_server")
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
                    progress=progress,
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
        bad_input = isinstance(e, InputError)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        if bad_input and not args.resume:
            from pipeline.runner.context import discard_unstarted_run

            discard_unstarted_run(ctx)  # bad input stopped prepare: no folder that looks like a run
        ctx.close()  # the run directory's lock (init_run_dir took it)
    _print_summary(run_dir)
    return run_dir


def _print_summary(run_dir: Path) -> None:
    import json

    m = json.loads((run_dir / "metrics.json").read_text())
    print(f"\nRun directory: {run_dir}")
    w = max([20, *(len(k) + 2 for k in m["models"])])  # fits "no-skill stratified"
    print(f"{'model':<{w}}{'OA':>7}{'kappa':>8}{'macroF1':>9}{'OA random':>11}")
    for name, f in (m.get("failed_models") or {}).items():
        print(f"{name:<{w}}failed in {f['stage']}: {f['reason']}")

    def num(v: float | None, width: int) -> str:  # undefined metrics are null: shown as "–"
        return f"{v:>{width}.3f}" if v is not None else f"{'–':>{width}}"

    from pipeline.report.ranking import no_skill_sentence, significance_sentence

    # the figures the models are ranked on: those of the assessable classes (all pixels in older runs)
    for name, r in m["models"].items():
        rk = r.get("ranking") or r
        rnd = m.get("random_split_contrast", {}).get(name, {}).get("overall_accuracy_random")
        print(
            f"{name:<{w}}{num(rk.get('overall_accuracy'), 7)}{num(rk.get('kappa'), 8)}{num(rk.get('macro_f1'), 9)}"
            f"{num(rnd, 11)}"
        )
    for name, r in (m.get("baselines") or {}).items():  # no-skill rows on the same test pixels
        rk = r.get("ranking") or r
        print(
            f"{'no-skill ' + name:<{w}}{num(rk.get('overall_accuracy'), 7)}{num(rk.get('kappa'), 8)}"
            f"{num(rk.get('macro_f1'), 9)}"
        )
    ev = m.get("evidence") or {}
    if ev.get("leakage"):
        print("Accuracy inflated by spatial leakage: " + "; ".join(ev.get("leakage_reasons") or []))
    if ev.get("conclusive") is False:
        print("Evaluation inconclusive (no best model): " + "; ".join(ev.get("reasons") or []))
    elif m["models"]:
        print(significance_sentence(m["models"], m.get("pairwise") or []))
        if ev.get("not_assessable"):
            print(
                "Not assessable, left out of the ranking: "
                + "; ".join(f"{k} ({v})" for k, v in ev["not_assessable"].items())
            )
    if flag := no_skill_sentence(m):
        print(flag)
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


def add_run_commands(sub: Any) -> None:
    """Add ``landcover run`` and ``landcover demo`` to an argparse subparsers object."""
    p = sub.add_parser("run", help="run the pipeline on a config")
    p.add_argument("config", type=Path, metavar="CONFIG", help="run configuration (YAML; see configs/)")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the pipeline on the embedded North Carolina Landsat 7 scene")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)
