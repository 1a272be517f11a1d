"""Progress output: rates, ETA, and the plain log lines used when there is no terminal."""

from __future__ import annotations

import sys

from sched_helpers import captured_log

from cluster.config import parse_config
from cluster.scheduler.attempt import worker_command
from cluster.scheduler.progress import Progress, eta_seconds, format_rate


def test_rates_and_eta() -> None:
    assert format_rate(0, 10) == "-"
    assert format_rate(2_500_000, 1.0) == "2.50M"
    assert format_rate(1500, 1.0) == "1.50k"
    assert eta_seconds(0, 10, 5.0) is None
    assert eta_seconds(5, 10, 5.0) == 5.0
    assert eta_seconds(10, 10, 5.0) == 0.0


def test_plain_lines_without_a_terminal_are_rate_limited() -> None:
    with captured_log("INFO") as messages:
        bar = Progress(100, label="step 2", enabled=False, unit="seeds", interval_s=3600)
        bar.update(10, 0, 1000)  # within the interval: no line
        bar.update(100, 2, 10_000, force=True)
        bar.close()
    assert len(messages) == 1
    assert "step 2: 100/100 jobs" in messages[0] and "failures 2" in messages[0] and "seeds/s" in messages[0]


def test_one_display_spans_calls_and_shows_work_in_shown_units() -> None:
    """A step's rounds count on one line: chunks and work add up across calls, the field's units are scaled
    (16 (seed, offset) pairs are one seed) and the ETA comes from the work, not from the chunks."""
    with captured_log("INFO") as messages:
        bar = Progress(0, label="step 1", enabled=False, unit="seeds", interval_s=3600)
        bar.expect(1_600_000, scale=16)  # 100k seeds at 16 offsets
        bar.note("trials 0/10")
        for _ in range(2):  # two rounds of two chunks, each call reporting its own numbers
            bar.begin_call(2)
            bar.update(2, 0, 400_000)
            bar.end_call()
        bar.note("trials 4/10")
        line = bar.line()
        bar.close()
    assert messages == []  # rounds are no news: only the interval (or a forced update) logs
    assert line.startswith("trials 4/10 · 50.0k/100.0k seeds ·") and "failures 0" in line and "ETA ?" not in line


def test_rich_bar_on_a_terminal_logs_nothing() -> None:
    with captured_log("INFO") as messages:
        bar = Progress(3, label="step 1", enabled=True)
        bar.update(1, 0, 0)
        bar.update(3, 0, 0, force=True)
        bar.close()
    assert messages == []


def test_local_default_python_is_the_coordinators() -> None:
    cfg = parse_config(
        {"nodes": [{"name": "l", "transport": "local"}, {"name": "r", "gpu_kind": "cpu", "gpu_count": 1}]}
    )
    assert worker_command(cfg.nodes[0], ["-m", "pipeline.worker"]) == [sys.executable, "-m", "pipeline.worker"]
    assert worker_command(cfg.nodes[1], ["-m", "pipeline.worker"])[0] == "python3"
