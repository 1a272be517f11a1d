"""Progress of chunk work: one live line on a terminal, periodic plain log lines otherwise (cron, CI, logs).

A display may span many `run_chunks` calls: a step that runs its work in rounds (step 1 asks Optuna for a
batch of trials per round) opens one for the whole step and passes it to every call, so the operator sees one
line per step that keeps counting, not a new bar per round. Each call adds its chunks (`begin_call`), reports
its own counts (`update`) and folds them in when it ends (`end_call`). The caller may say how much work the
whole step is (`expect`, in the progress field's units, with `scale` of them to one shown unit: an item the
workload counts once per variant it tries counts that many times in the field, once on the line) and add a
note of its own ("trials 36/100").

On a terminal the line is a rich live display on stderr; log lines and prints are printed above it (rich
redirects sys.stderr, and sys.stdout when that is the same terminal), never into it. Without a terminal a
plain INFO line goes out at most once per `interval_s`.

Fed only from the scheduler's coordinating thread (and the step between calls), so it needs no locking.
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


def format_count(count: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return f"{count:.0f}"


def eta_seconds(done: float, total: float, elapsed: float) -> float | None:
    if done <= 0 or total <= done:
        return None if total > done else 0.0
    return elapsed / done * (total - done)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    def __init__(
        self,
        total: int,
        *,
        label: str,
        enabled: bool | None,
        unit: str = "items",
        interval_s: float = 30.0,
    ) -> None:
        self.unit = unit
        self.label = label
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._last_log = self.started
        self.note_text = ""
        self.expected: float | None = None  # the whole work, in the progress field's units
        self.scale = 1.0
        # folded in from calls that ended, plus the current call's latest numbers
        self.chunks_base = self.done_base = self.failures_base = self.counted_base = 0
        self.chunks = total
        self.done = self.failures = self.counted = 0
        self._bar: Any = None
        self._task: Any = None
        self._tty = sys.stderr.isatty() if enabled is None else enabled

    # --- what callers tell it ------------------------------------------------------------------------
    def expect(self, units: float, *, scale: float = 1.0) -> None:
        """The whole work of what this display covers, in the progress field's units; `scale` of them make one
        unit shown (the ETA and the rate come from these)."""
        self.expected, self.scale = float(units), max(float(scale), 1e-12)

    def note(self, text: str) -> None:
        self.note_text = text
        self._show(force=False)

    def begin_call(self, chunks: int) -> None:
        self.chunks = chunks
        self.done = self.failures = self.counted = 0

    def update(self, done: int, failures: int, counted: int, *, force: bool = False) -> None:
        """This call's numbers: chunks done, failed attempts, and the progress field summed over finished
        chunks plus what heartbeats report of chunks in flight (0: show chunks only)."""
        self.done, self.failures, self.counted = done, failures, counted
        self._show(force=force)

    def end_call(self) -> None:
        self.chunks_base += self.chunks
        self.done_base += self.done
        self.failures_base += self.failures
        self.counted_base += self.counted
        self.chunks = self.done = self.failures = self.counted = 0

    # --- what it shows -------------------------------------------------------------------------------
    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        counted = (self.counted_base + self.counted) / self.scale
        done, chunks = self.done_base + self.done, self.chunks_base + self.chunks
        parts = [self.note_text] if self.note_text else []
        if self.expected:
            expected = self.expected / self.scale
            parts.append(f"{format_count(counted)}/{format_count(expected)} {self.unit}")
            eta = eta_seconds(counted, expected, elapsed)
        else:
            parts.append(f"{done}/{chunks} jobs")
            eta = eta_seconds(done, chunks, elapsed)
        if counted:
            parts.append(f"{format_rate(counted, elapsed)} {self.unit}/s")
        parts.append(f"ETA {format_eta(eta)}")
        parts.append(f"failures {self.failures_base + self.failures}")
        return " · ".join(parts)

    def _show(self, *, force: bool) -> None:
        if self._tty:
            self._live().update(self._task, info=self.line(), **self._fraction())
            return
        now = time.monotonic()
        if force or now - self._last_log >= self.interval_s:
            self._last_log = now
            logger.info(f"{self.label}: {self.line()}, elapsed {now - self.started:.0f} s")

    def _fraction(self) -> dict[str, float]:
        if self.expected:
            return {"completed": min(self.counted_base + self.counted, self.expected), "total": self.expected}
        return {"completed": self.done_base + self.done, "total": max(1, self.chunks_base + self.chunks)}

    def _live(self) -> Any:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
                redirect_stderr=True,
                redirect_stdout=sys.stdout.isatty(),  # a stdout sent to a file stays in that file
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None, info="")
        return self._bar

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, info=self.line(), **self._fraction())
            self._bar.stop()
            self._bar = None
