"""Logging for people at a terminal and for cron alike: colour only on a TTY, plain lines otherwise,
a rotated file under <state>/logs, and secrets scrubbed and control characters escaped in every record
before any sink sees it."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from loguru import logger

from cluster.text import printable

SECRET_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
FORMAT = "{time:YYYY-MM-DD HH:mm:ss} | {level: <7} | {message}"


def redact(text: str) -> str:
    key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
    if key:
        text = text.replace(key, "[redacted]")
    return SECRET_PATTERN.sub("[redacted]", text)


def _scrub(record: dict[str, Any]) -> None:
    """Every record, before any sink: secrets out, control characters from nodes or an LLM made visible."""
    record["message"] = printable(redact(record["message"]))


@contextmanager
def safe_defaults() -> Iterator[None]:
    """What every console script runs under: files it creates readable by the owner only (run history, LLM
    transcripts, logs), and the scrubbing patcher on loguru's default sink too. The umask is restored on
    exit, so calling a CLI's main() inside another program (a test) does not change that program's."""
    previous = os.umask(0o077)
    logger.configure(patcher=_scrub)  # type: ignore[arg-type]
    try:  # loguru's default sink (id 0) has diagnose on: locals of every frame in a traceback. Ours has not.
        logger.remove(0)
    except ValueError:
        pass  # already replaced (by an earlier call in this process, or by setup_logging)
    else:
        logger.add(_to_stderr, level="INFO", format=_console_line, colorize=False, diagnose=False, backtrace=False)
    try:
        yield
    finally:
        os.umask(previous)


EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader went away


def console_main(body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """How every console script runs its body: under `safe_defaults`, and quietly when its reader leaves early."""
    with safe_defaults():
        try:
            code = body(argv)
            sys.stdout.flush()  # inside the try: a reader gone before the last buffered write is caught here
            return code
        except BrokenPipeError:
            return reader_left()


def reader_left() -> int:
    """`watcher status | head -3`: the reader left, which is no error of ours and no reason for a traceback.
    The rest of stdout goes to /dev/null, so the interpreter's own flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE


def _console_line(record: dict[str, Any]) -> str:
    """The terminal's view of a record: its first line only, never a traceback (those, and every line of a
    multi-line record, go to the log file), with `{` escaped since loguru formats what a callable returns."""
    first, _, rest = record["message"].partition("\n")
    more = " (full record in watcher.log)" if rest or record["exception"] else ""
    text = f"{record['time']:%Y-%m-%d %H:%M:%S} | {record['level'].name: <7} | {first}{more}"
    return text.replace("{", "{{").replace("}", "}}").replace("<", "\\<") + "\n"


def _to_stderr(message: str) -> None:
    """Write to whatever sys.stderr is now, so a live progress display that redirects it prints log lines
    above itself instead of into it."""
    sys.stderr.write(message)
    sys.stderr.flush()


class _LogFile(RotatingFileHandler):
    """watcher.log, rotated at 10 MB, 10 kept. A write that fails (a full disk) is said once, in one line,
    instead of a traceback per record; the run's own error says what failed."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            err = sys.exc_info()[1]
            print(
                f"watcher: cannot write {self.baseFilename}: {err}; the log file misses what follows", file=sys.stderr
            )

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the last flush on a full disk fails too: said above already
            super().close()


def setup_logging(state_dir: Path, *, verbose: bool = False, stderr: bool = True) -> Path:
    """Records at INFO and above on the terminal, one line each; everything, tracebacks included, in
    <state>/logs/watcher.log. `diagnose` is off everywhere: loguru would print every local variable of every
    frame of a traceback (a key or a token in a local would land in the log). Records bound with
    console=False (what `say` already printed) go to the file only."""
    log_dir = Path(state_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.configure(patcher=_scrub)  # type: ignore[arg-type]
    if stderr:
        logger.add(_to_stderr, level="DEBUG" if verbose else "INFO", format=_console_line, colorize=False,
                   diagnose=False, backtrace=False, filter=lambda r: r["extra"].get("console", True))  # fmt: skip
    path = log_dir / "watcher.log"
    handler = _LogFile(path, maxBytes=10 << 20, backupCount=10, encoding="utf-8")
    logger.add(handler, level="DEBUG", format=FORMAT, colorize=False, diagnose=False, backtrace=False)
    return path


def note(text: str) -> None:
    """Put a line the terminal has already shown (a decision, the verdict) in watcher.log as well."""
    logger.bind(console=False).info(text)
