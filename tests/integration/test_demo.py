"""``driftwatch demo`` as a person runs it: the page's URL first (and it serves the page),
then what a person follows, without the per-checkpoint log lines (every 5 s)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading

from driftwatch.cli import DEMO_QUIET_LOGGERS, configure_logging
from tests.helpers import http_get, wait_for


def test_the_demo_prints_the_page_first_and_no_checkpoint_chatter():
    proc = subprocess.Popen(
        [sys.executable, "-m", "driftwatch", "demo", "--duration", "14", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: lines, 30, what="the demo's first line")
        first = re.fullmatch(r"driftwatch demo: open (http://\S+/) in a browser.*\n", lines[0])
        assert first, lines[0]
        code, page = http_get(first.group(1))
        assert code == 200 and b"<title>driftwatch</title>" in page
        assert proc.wait(45) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)
    reader.join(5)
    out = "".join(lines)
    assert "metrics: " in lines[1] and "/metrics" in lines[1]
    assert "[status] credit-default: " in out  # evaluated, reported every 10 s
    # checkpoints every 5 s and the partition bookkeeping stay out of the demo's output
    assert "checkpointed" not in out and "driftwatch.partitions" not in out, out


def test_demo_log_levels():
    root, saved = logging.getLogger(), {n: logging.getLogger(n).level for n in DEMO_QUIET_LOGGERS}
    root_level = root.level
    try:
        root.setLevel(logging.INFO)  # (under pytest basicConfig leaves the root alone)
        configure_logging("demo", "INFO")
        assert not logging.getLogger("driftwatch.partitions").isEnabledFor(logging.INFO)
        assert logging.getLogger("driftwatch.pipeline").isEnabledFor(logging.INFO)  # alerts
        assert logging.getLogger("driftwatch.sinks.webhook").isEnabledFor(logging.INFO)
        for name in DEMO_QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        root.setLevel(logging.DEBUG)
        configure_logging("demo", "DEBUG")  # shows everything
        assert logging.getLogger("driftwatch.partitions").isEnabledFor(logging.DEBUG)
        root.setLevel(logging.INFO)
        configure_logging("run", "INFO")  # the daemon's operators keep their INFO lines
        assert logging.getLogger("driftwatch.partitions").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(root_level)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
