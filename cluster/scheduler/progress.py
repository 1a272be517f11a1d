"""Progress of a chunk run: a rich bar on a terminal, periodic plain log lines otherwise (cron, CI, logs).

Fed only from the scheduler's coordinating thread, so it needs no locking of its own.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from loguru import logger


def format_rate(count: float, seconds: float) -> str:
    if seconds <= 0 or count <= 0:
        return "-"
    rate = count / seconds
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.2f}{unit}"
    return f"{rate:.1f}"


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    if done <= 0 or total <= done:
        return None if total > done else 0.0
    return elapsed / done * (total - done)


class Progress:
    def __init__(
        self, total: int, *, label: str, enabled: bool | None, unit: str = "items", interval_s: float = 10.0
    ) -> None:
        self.unit = unit
        self.total = total
        self.label = label
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Any = None
        self._task: Any = None
        tty = sys.stderr.isatty() if enabled is None else enabled
        if tty and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                transient=False,
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, info="")

    def update(self, done: int, failures: int, counted: int, *, force: bool = False) -> None:
        """counted: the sum of the caller's progress field over finished chunks (0: show chunks only)."""
        elapsed = time.monotonic() - self.started
        info = (
            f"{self.unit}/s {format_rate(counted, elapsed)}  failures {failures}" if counted else f"failures {failures}"
        )
        if self._bar is not None:
            self._bar.update(self._task, completed=done, info=info)
            return
        now = time.monotonic()
        if force or now - self._last_log >= self.interval_s:
            self._last_log = now
            eta = eta_seconds(done, self.total, elapsed)
            eta_text = f"{eta:.0f} s" if eta is not None else "?"
            logger.info(
                f"{self.label}: {done}/{self.total} chunks done, {info}, elapsed {elapsed:.0f} s, ETA {eta_text}"
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
