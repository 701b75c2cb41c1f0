"""What an operator reads: progress bars only on a terminal, never glued to a log line, and a
run that ends with its stage-reuse summary (issue #25.5).

The terminal is emulated (:func:`screen_lines`): a carriage return moves the cursor to the
start of the line, other characters overwrite what is under the cursor, so what a test
checks is what a person would see, not the raw bytes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import REPO  # noqa: E402
from tiny_project import make_project  # noqa: E402

LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def screen_lines(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw``: ``\\r`` returns to column 0, ``\\n`` ends the line,
    any other character overwrites the one under the cursor. ANSI escapes are dropped."""
    raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    lines, cur, col = [], [], 0
    for ch in raw:
        if ch == "\n":
            lines.append("".join(cur).rstrip())
            cur, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(cur):
                cur[col] = ch
            else:
                cur.append(ch)
            col += 1
    if cur:
        lines.append("".join(cur).rstrip())
    return lines


def test_a_log_record_clears_the_progress_bar_it_interrupts():
    """A record written while a bar is drawn starts at column 0 of a blank line: the console
    handler clears the bars on its stream first (and draws them again after)."""
    from tqdm import tqdm

    from pipeline.cli.console import console_handler

    # the emulated terminal first: what it shows for a record glued to a bar, and for a cleared bar
    assert screen_lines("abcdef\rxy\n") == ["xycdef"]
    assert screen_lines("bar 10%\r       \rINFO done\n") == ["INFO done"]
    assert screen_lines("bar 10%INFO done\n") == ["bar 10%INFO done"]

    stream = io.StringIO()
    logger = logging.getLogger("tests.console.bars")
    logger.propagate = False
    handler = console_handler(stream)
    logger.addHandler(handler)
    try:
        bar = tqdm(total=10, desc="train cnn", file=stream, mininterval=0, ascii=True)
        bar.update(3)
        logger.warning("stage train:decision_tree: done in 1.00 s")
        bar.update(2)
        bar.close()
    finally:
        logger.removeHandler(handler)
    lines = screen_lines(stream.getvalue())
    record = [ln for ln in lines if "stage train:decision_tree" in ln]
    assert record == ["WARNING stage train:decision_tree: done in 1.00 s"], stream.getvalue()
    assert any(ln.startswith("train cnn: ") for ln in lines)  # the bar is still drawn, on its own line


def _no_api_env(prefect_home: Path) -> dict[str, str]:
    """A ``landcover`` environment with no Prefect API: neither PREFECT_API_URL nor a profile
    (a PREFECT_HOME of its own), so the default engine runs in process."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PREFECT_HOME": str(prefect_home), "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory):
    """A tiny run (a decision tree and a 3-epoch CNN) with the default engine and no Prefect API,
    stderr on a pseudo-terminal 120 columns wide: ``(root, config, env, what the terminal got)``."""
    import fcntl
    import pty
    import struct
    import termios

    root = tmp_path_factory.mktemp("console")
    cfg = make_project(
        root / "project",
        models={"decision_tree": {}, "cnn": {"epochs": 3, "channels": 4, "patience": 3}},
        split={"random_contrast": False, "strategy": "blocks"},
    )
    env = _no_api_env(root / "prefect-home")
    master, slave = pty.openpty()
    # a terminal 120 columns wide (a new pseudo-terminal has 0, on which tqdm draws nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--out", str(root / "runs"), "--run-id", "t"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            proc.kill()
            pytest.fail("no output for 300 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    raw = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")  # the tty turns \n into \r\n
    return root, cfg, env, raw


def test_on_a_terminal_bars_show_and_no_log_line_is_glued_to_one(terminal_run):
    """stderr on a pseudo-terminal: the training bar is drawn, and every log line the screen
    shows starts at column 0 (the bars are cleared around it); the run ends with its summary."""
    root, _, _, raw = terminal_run
    assert re.search(r"cnn [^\n]*epoch/s", raw) and "\r" in raw, raw  # a training bar was drawn
    shown = [ln for ln in screen_lines(raw) if ln.strip()]
    with_record = [ln for ln in shown if re.search(r"(DEBUG|INFO|WARNING|ERROR) ", ln)]
    assert with_record and all(LOG_LINE.match(ln) for ln in with_record), "\n".join(shown)
    assert _seconds_out(with_record[-1]) == _summary(root / "runs" / "t"), with_record[-1]
    assert " 0 of " in with_record[-1]  # a first run computes every stage


def test_a_redirected_run_log_holds_log_lines_only_and_ends_with_the_reuse_summary(terminal_run):
    """stderr to a pipe (as to a file): no bars, no carriage returns, every line a log line, while
    the maps are computed again (a new mapping setting) and the rest comes from the stage store;
    the run ends with the summary that counts them. No Prefect API: the default engine ran in
    process and started no server."""
    root, cfg, env, _ = terminal_run
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--out", str(root / "runs"), "--run-id", "r"]
    r = subprocess.run(
        [*cmd, "--set", "mapping.window_size=16"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and all(LOG_LINE.match(ln) for ln in lines), r.stderr
    run = root / "runs" / "r"
    assert _seconds_out(lines[-1]) == _summary(run), lines[-1]
    cached = {s["name"]: s["cached"] for s in _stages(run)}
    assert cached["prepare"] and cached["train:cnn"] and not cached["map:cnn"] and not cached["map:decision_tree"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["engine"] == "local" and "prefect_flow_run_id" not in manifest
    log = (run / "run.log").read_text()
    assert "engine: local (no Prefect API configured" in log and "Beginning flow run" not in log
    assert not (root / "prefect-home" / "prefect.db").exists()  # no temporary server made its database


def _stages(run: Path) -> list[dict]:
    return json.loads((run / "manifest.json").read_text())["stages"]


def _seconds_out(line: str) -> str:
    return re.sub(r"reused, [0-9.]+ s$", "reused, <s> s", line)


def _summary(run: Path) -> str:
    """The summary line expected from the run's manifest (counted here, not by the code under test),
    its seconds left as they were printed."""
    stages = _stages(run)
    n_cached = sum(1 for s in stages if s["cached"])
    return f"INFO finished: {n_cached} of {len(stages)} stages reused, <s> s"
