"""`watcher dashboard`: optuna-dashboard on 127.0.0.1 over this state directory's studies."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from cluster.errors import StoreError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dashboard", help="serve optuna-dashboard for the run's studies on 127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; use an SSH tunnel)")
    p.set_defaults(handler=run)


# Runs optuna-dashboard's own console script with Ctrl-C and SIGTERM turned into a quiet exit 0: stopping a
# server you started is no error, and its traceback (the server loop interrupted) told the operator nothing.
QUIET_STOP = (
    "import runpy, signal, sys\n"
    "def stop(*_): sys.exit(0)\n"
    "signal.signal(signal.SIGINT, stop); signal.signal(signal.SIGTERM, stop)\n"
    "script = sys.argv.pop(1); sys.argv[0] = 'optuna-dashboard'\n"
    "runpy.run_path(script, run_name='__main__')\n"
)


def dashboard_command(state_dir: Path, host: str, port: int) -> list[str]:
    db = (Path(state_dir) / "optuna.db").resolve()
    if not db.exists():
        raise StoreError(f"no Optuna storage at {db}: run step 1 first")
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).parent / "optuna-dashboard")
    return [sys.executable, "-c", QUIET_STOP, exe, f"sqlite:///{db}", "--host", host, "--port", str(port)]


def run(args: argparse.Namespace) -> int:
    cmd = dashboard_command(Path(args.state_dir), args.host, args.port)
    print(f"optuna-dashboard: http://{args.host}:{args.port}/  (Ctrl-C to stop)", flush=True)
    # Replace this process: a supervisor (systemd, a test, a terminal) that stops `watcher dashboard`
    # then stops the server itself, instead of leaving an orphan listening on the port.
    os.execv(cmd[0], cmd)
    return 0  # not reached
