"""`watcher halt` asks a running run to stop between steps and chunks; `watcher resume-ok` clears it."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from agents.lock import lock_is_held, read_holder
from agents.settings import AgentSettings
from cluster.errors import ConfigError
from pipeline.spec import default_pipeline_path, load_pipeline


def _halt_file(args: argparse.Namespace) -> Path:
    """The running run's own halt file (it publishes it in the lock file), else the pipeline's: always a
    plain name inside the state directory, so halting or clearing can touch nothing else."""
    state = Path(args.state_dir)
    name = read_holder(state).get("halt_file") if lock_is_held(state) else None
    if not isinstance(name, str):
        spec = load_pipeline(getattr(args, "pipeline", None) or default_pipeline_path())
        name = AgentSettings.from_mapping(spec.agent).limits.halt_file
    if Path(name).name != name or name in {"", ".", ".."}:
        raise ConfigError(f"halt_file {name!r} must be a plain file name inside the state directory")
    return state / name


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    halt = sub.add_parser("halt", help="stop the running run at the next step or chunk boundary")
    halt.set_defaults(handler=run_halt)
    ok = sub.add_parser("resume-ok", help="clear a halt so runs may start again")
    ok.set_defaults(handler=run_resume_ok)


def run_halt(args: argparse.Namespace) -> int:
    path = _halt_file(args)
    active = lock_is_held(Path(args.state_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"halted by {getpass.getuser()} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    if active:
        print(f"halt requested ({path}): the run stops between chunks; `watcher resume-ok` clears it")
    else:
        print(
            f"watcher: warning: no run is active in {args.state_dir}: the halt ({path}) stops every run started "
            "from now on at once, until `watcher resume-ok` clears it",
            file=sys.stderr,
        )
    return 0


def run_resume_ok(args: argparse.Namespace) -> int:
    path = _halt_file(args)
    path.unlink(missing_ok=True)
    print("halt cleared")
    return 0
