"""``landcover serve``: scheduled batch mapping of new rasters in an inbox.

Each cycle is one run of the ``batch-map`` flow (:mod:`flows.batch`) around the library
code of :mod:`pipeline.runner.batch` (see there for what a cycle does). ``--once`` runs one
cycle in this process; otherwise the flow is served as a deployment on a cron schedule.

The CLI imports this module to register the ``serve`` subcommand; Prefect is imported
only when a cycle runs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pipeline.cli.console import quiet_console, show_progress
from pipeline.core.errors import InputError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- CLI
def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.config.loading import load_config

    cfg, _ = load_config(args.config)  # validate now: a bad config fails before Prefect starts
    if not args.once and not args.cron:
        raise InputError('serve: give --cron "MIN HOUR DOM MON DOW" (or --once for one cycle)')
    if args.max_pixels is not None and args.max_pixels < 1:
        raise InputError(f"--max-pixels {args.max_pixels}: must be at least 1")
    if args.once and args.cron:
        raise InputError("serve: --once runs one cycle now and --cron serves a schedule; give one of them")
    from pipeline.runner.promotion import model_in_runs, promoted_model

    if args.dask:  # a dead, silent or malformed address: one line now, not tracebacks from every task
        from pipeline.cli.preflight import check_dask_scheduler

        check_dask_scheduler(args.dask, f"--dask {args.dask}")

    runs = (args.runs or Path(cfg.output_dir)).resolve()
    if args.model is not None and not args.model.exists():
        raise InputError(f"{args.model}: model file not found")
    if args.model is not None:
        model_in_runs(args.model, runs)
    else:  # no model to promote on the evidence: one line now, before Prefect starts (each cycle checks again)
        promoted_model(runs, allow_inconclusive=args.allow_inconclusive)
    params = {
        "config_path": str(args.config.resolve()),
        "inbox": str(args.inbox.resolve()) if args.inbox else None,
        "outbox": str(args.outbox.resolve()) if args.outbox else str(Path(cfg.output_dir, "outbox").resolve()),
        "model": str(args.model.resolve()) if args.model else None,
        "rasters": [str(Path(r).resolve()) for r in args.raster] or None,
        "state_file": str(args.state.resolve()) if args.state else None,
        "runs_dir": str(runs),
        "settle_seconds": args.settle,
        "retry_failed": args.retry_failed,
        "dask_address": args.dask,
        "progress": bool(args.once) and show_progress(args.no_progress),
        "strict": bool(args.strict),
        "allow_inconclusive": bool(args.allow_inconclusive),
        "max_pixels": args.max_pixels,
        "allow_outside_inbox": bool(args.allow_outside_inbox),
    }
    from flows.batch import batch_map  # imports Prefect

    quiet_console(hide_input_errors=False)  # no "Finished in state Completed()" line per scene
    for name in ("pipeline", "flows"):
        logging.getLogger(name).setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.once:
        from flows.ephemeral import start_tied_server

        start_tied_server()  # without PREFECT_API_URL: a temporary server that cannot outlive this process
        summary = _cycle_summary(batch_map(**params, return_state=True))
        for m in summary["mapped"]:
            print(f"mapped {m['input']} -> {m['map']}" + (f" (WARNING: {m['warning']})" if m.get("warning") else ""))
        for f in summary["failed"]:
            print(f"FAILED {f['input']}: {f['error']}")
        if summary.get("cycle_report"):
            print(f"cycle report: {summary['cycle_report']}")
        else:
            print(f"nothing new to map ({summary['seen']} seen, {summary['settling']} still settling)")
        return EXIT_SCENE_FAILED if summary["failed"] else 0
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        log.warning(
            "no PREFECT_API_URL: an ephemeral server has no scheduler, so the cron schedule will not "
            "create runs. Start `prefect server start --host 127.0.0.1` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or put `landcover serve CONFIG --once ...` in a crontab"
        )
    print(f"serving deployment {args.name!r} of flow 'batch-map' on cron {args.cron!r} (Ctrl-C stops it)")
    _serve_schedule(batch_map, args.name, args.cron, params)
    return 0


#: ``serve --once``: the cycle ran, but at least one scene failed (reported; the others are mapped).
EXIT_SCENE_FAILED = 3


def _cycle_summary(state: Any) -> dict:
    """The summary of a batch-map flow run's final state; a failed scene's cycle (Failed state,
    :class:`~pipeline.runner.batch.CycleFailed` result) gives its summary too, anything else
    that failed is raised (bad input is then one line, exit code 2)."""
    from pipeline.runner.batch import CycleFailed

    if state.is_completed():
        return state.result()
    result = state.result(raise_on_failure=False)
    if isinstance(result, CycleFailed):
        return result.summary
    if isinstance(result, BaseException):
        raise result
    raise RuntimeError(f"the batch-map flow run ended {state.name}: {state.message}")


def _serve_schedule(flow_: Any, name: str, cron: str, params: dict) -> None:
    """Serve ``flow_`` as deployment ``name`` on ``cron`` until Ctrl-C or SIGTERM, one run at a time.

    What ``flow.serve()`` does, with one difference: Prefect's runner handles SIGTERM by calling
    its synchronous ``stop()`` inside the running event loop, which only creates a coroutine
    ("coroutine 'Runner.astop' was never awaited") and exits with code 0. Here SIGTERM and
    Ctrl-C cancel the runner's task from the event loop (``call_soon_threadsafe``): the runner
    stops at its next await, pauses the deployment on its way out, and the CLI exits 143 (130
    for Ctrl-C) as for any interrupted command. Raising from the signal handler instead (as the
    CLI's handlers do elsewhere) surfaced inside whatever the loop was awaiting at that instant,
    e.g. an HTTP request to the API, and printed an exception-group traceback. A second signal
    stops the process at once, as everywhere in the CLI.
    """
    import asyncio
    import os
    import signal
    import sys

    from prefect.runner import Runner

    from pipeline.core.cancel import Interrupted, cancel_requested, cancel_signal, request_cancel

    stop: dict[str, Any] = {}

    def on_signal(signum: int, frame: Any = None) -> None:
        if cancel_requested():  # a second signal: the user does not want to wait
            sys.stderr.write("landcover: interrupted again; stopping now\n")
            sys.stderr.flush()
            os._exit(128 + int(signum))
        request_cancel(signum)
        if "loop" in stop:
            stop["loop"].call_soon_threadsafe(stop["task"].cancel)

    class _Runner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:  # installed by Runner.start()
            on_signal(signal.SIGTERM)

    runner = _Runner(name=name, pause_on_shutdown=True, limit=1)
    runner.add_flow(flow_, name=name, cron=cron, parameters=params)

    async def serve() -> None:
        stop.update(loop=asyncio.get_running_loop(), task=asyncio.current_task())
        await runner.start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(serve())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if cancel_requested():
        raise Interrupted(cancel_signal())


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="scheduled batch mapping of new rasters in an inbox folder",
        description="Serve a Prefect deployment that maps every new raster in an inbox with the "
        "registered best model on a cron schedule; --once runs one cycle and exits.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="run configuration (output_dir, mapping settings)")
    p.add_argument("--cron", help='cron schedule, e.g. "0 3 * * *" (not with --once)')
    p.add_argument(
        "--once",
        action="store_true",
        help="run one cycle in this process and exit (exit code 3 when a scene failed, 2 for bad input)",
    )
    p.add_argument("--inbox", type=Path, help="folder watched for new *.tif/*.tiff rasters")
    p.add_argument("--raster", action="append", default=[], metavar="PATH", help="also map this raster (repeatable)")
    p.add_argument("--outbox", type=Path, help="where maps and reports go (default: OUTPUT_DIR/outbox)")
    p.add_argument(
        "--model",
        type=Path,
        help="saved model to map with, chosen deliberately (default: the best model of the newest run in --runs, "
        "when that run's evaluation was conclusive and leak-free)",
    )
    p.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help="promote the newest run's best model even when its evaluation was inconclusive, leaky or no better "
        "than a no-skill map (the scene and cycle reports say so)",
    )
    p.add_argument(
        "--runs", type=Path, help="runs directory to take the best model from (default: the config's output_dir)"
    )
    p.add_argument("--state", type=Path, help="state file of processed inputs (default: OUTBOX/.serve-state.json)")
    p.add_argument(
        "--settle",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="leave files modified less than this long ago for the next cycle",
    )
    p.add_argument("--retry-failed", action="store_true", help="retry scenes that failed in an earlier cycle")
    p.add_argument("--name", default="landcover-batch-map", help="deployment name")
    p.add_argument("--dask", metavar="ADDRESS", help="map scenes on this Dask cluster")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail a scene (reported, nothing written) instead of warning when its values or data type "
        "clearly differ from the model's training pixels",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="fail scenes larger than this many pixels (default: the config's mapping.max_pixels, "
        "4000000000 unless set)",
    )
    p.add_argument(
        "--allow-outside-inbox",
        action="store_true",
        help="map inbox files that are links to, or VRTs reading, files outside the inbox (refused by default: "
        "whoever can write to the inbox could otherwise have any readable file mapped)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the mapping progress bars (--once; shown only when stderr is a terminal)",
    )
    p.set_defaults(func=cmd_serve)
