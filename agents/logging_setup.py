"""Logging for people at a terminal and for cron alike: colour only on a TTY, plain lines otherwise,
a rotated file under <state>/logs, and secrets scrubbed and control characters escaped in every record
before any sink sees it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
    try:
        yield
    finally:
        os.umask(previous)


def setup_logging(state_dir: Path, *, verbose: bool = False, stderr: bool = True) -> Path:
    log_dir = Path(state_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.configure(patcher=_scrub)  # type: ignore[arg-type]
    if stderr:
        tty = sys.stderr.isatty()
        logger.add(sys.stderr, level="DEBUG" if verbose else "INFO", format=FORMAT, colorize=tty)
    path = log_dir / "watcher.log"
    logger.add(path, level="DEBUG", format=FORMAT, colorize=False, rotation="10 MB", retention=10, enqueue=False)
    return path
