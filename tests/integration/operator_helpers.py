"""What the operator-day tests share: a tiny pipeline, the CLI as a subprocess, polling the run store, and a
pseudo-terminal with just enough of a VT100 to read back what an operator would see."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from cluster.errors import StoreError
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
ENV = {k: v for k, v in os.environ.items() if k not in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}}
BAR = re.compile(r"^step [\d.]+ [━╸╺]")  # a progress display's line, as the terminal finally shows it


def tiny(tmp: Path, trials: int = 24, max_seeds: int = 20_000) -> list[str]:
    """The shipped history on a narrowed envelope: a whole run takes seconds; no retries."""
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    spec["data"].update(history=str(REPO / "data" / "history.json"), offset_range=[6, 8], skip_range=[1, 2])
    spec["steps"][0]["params"].update(trials=trials, max_seeds=max_seeds)
    spec["steps"][1]["params"]["chunk_seeds"] = 1 << 19
    spec["steps"][2]["params"]["trials"] = 6
    spec["agent"]["limits"] = {"retries_per_step": 0, "total_retries": 0}
    (tmp / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    config = json.loads((REPO / "distributed_config.json").read_text())
    config["nodes"][0]["ramdisk_path"] = str(tmp / "ramdisk")
    (tmp / "cluster.json").write_text(json.dumps(config))
    return ["--pipeline", str(tmp / "pipeline.yaml"), "--config", str(tmp / "cluster.json")]


def cli(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "agents.cli", "--state-dir", str(tmp / "state")]


def watcher(tmp: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*cli(tmp), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=ENV)  # fmt: skip


def wait_for(proc: subprocess.Popen, ready: object, what: str, tmp: Path, limit: float = 240) -> None:
    """Poll the run store until `ready(store)`; fail if the run ends first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with RunStore(tmp / "state" / "watcher.db", readonly=True) as store:
                if ready(store):  # type: ignore[operator]
                    return
        except StoreError:
            pass  # not created yet
        time.sleep(0.05)
    pytest.fail(f"watcher run ended (exit {proc.returncode}) or took too long before {what}")


def screen(raw: str) -> list[str]:
    """What a terminal shows after `raw` (carriage returns, erase-line and cursor-up honoured; colours dropped):
    enough of a VT100 to see whether a display redrew itself in place or left a trail of lines."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b.|[\r\n]|[^\x1b\r\n]", raw):
        if token.startswith("\x1b["):
            arg, cmd = token[2:-1], token[-1]
            if cmd == "K":
                lines[row] = [] if arg == "2" else lines[row][:col]
            elif cmd == "A":
                row = max(0, row - int(arg or 1))
        elif token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines.extend([] for _ in range(row + 1 - len(lines)))
        elif not token.startswith("\x1b"):
            line = lines[row]
            line.extend(" " for _ in range(col - len(line)))
            line[col : col + 1] = [token]
            col += 1
    return ["".join(line).rstrip() for line in lines]


def on_terminal(argv: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run argv with stdin, stdout and stderr on a pseudo-terminal 160 columns wide; (exit code, bytes shown)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env={**ENV, "TERM": "xterm"})
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
