"""Suite-wide guard: the tests leave no process behind.

Every process the suite starts (fake rigs' sshd, workers, optuna-dashboard, chromium, the local Ray clusters'
GCS, raylets, agents and actors) works under this session's pytest temp directory: it names it on its command
line, or it has a file open there (Ray's processes rename themselves, `ray::IDLE`, but keep their logs open
under the temp directory they were given). At the end of the session any such process still alive is killed and
the session fails, naming it, so a leak is fixed where it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest


def _strays(marker: str) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if marker in cmdline or _files_under(entry, marker):
            found.append((int(entry.name), cmdline[:200]))
    return found


def _files_under(entry: Path, marker: str) -> bool:
    """Whether the process has a file open under `marker` (Ray's processes keep their logs open there)."""
    try:
        fds = list((entry / "fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd).startswith(marker):
                return True
        except OSError:
            continue
    return False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or hasattr(session.config, "workerinput"):
        return
    marker = str(factory.getbasetemp())
    strays = _strays(marker)
    for pid, _ in strays:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if strays:
        lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in strays)
        print(f"\nprocesses left behind by the tests (killed now):\n{lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
