"""`watcher cron --every 6h`: print a crontab line and a systemd service+timer for unattended runs.

Both use absolute paths (cron has no PATH worth the name), resume a crashed run instead of starting
over, and append everything to a log file: a scheduled run is never silent.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
from pathlib import Path

from cluster.errors import UsageError

UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> tuple[int, str]:
    """(seconds, unit) for 30m / 6h / 1d; cron can only express divisors of the next unit up."""
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--every {text!r}: use a number and m, h or d, e.g. 30m, 6h, 1d")
    value, unit = int(match.group(1)), match.group(2)
    limits = {"m": 60, "h": 24, "d": 31}
    if unit != "d" and limits[unit] % value:
        raise UsageError(
            f"--every {text}: cron cannot repeat every {value}{unit} evenly; use a divisor of {limits[unit]}"
        )
    if unit == "d" and value > 31:
        raise UsageError(f"--every {text}: at most 31d")
    return value * UNITS[unit], unit


def cron_schedule(text: str) -> str:
    seconds, unit = parse_every(text)
    value = seconds // UNITS[unit]
    if unit == "m":
        return f"*/{value} * * * *" if value > 1 else "* * * * *"
    if unit == "h":
        return f"0 */{value} * * *" if value > 1 else "0 * * * *"
    return f"0 3 */{value} * *" if value > 1 else "0 3 * * *"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cron", help="print a crontab line and a systemd timer for scheduled runs")
    p.add_argument("--every", required=True, help="interval: 30m, 6h, 1d ...")
    p.add_argument("--from-step", type=float, default=1.0)
    p.add_argument("--config", default=None)
    p.add_argument("--pipeline", default=None)
    p.set_defaults(handler=run)


def install_dir() -> Path:
    """The folder of the watcher installation that is running this command (its pipeline.yaml and config are
    the defaults a scheduled run falls back to), whatever the current directory is."""
    return Path(__file__).resolve().parents[2]


def cron_escape(command: str) -> str:
    """cron turns an unescaped % into a newline (the rest becomes stdin): escape every one."""
    return command.replace("%", "\\%")


def run(args: argparse.Namespace) -> int:
    seconds, _ = parse_every(args.every)
    beside = Path(sys.executable).parent / "watcher"  # this installation's own script, e.g. .venv/bin/watcher
    found = beside if beside.exists() else shutil.which("watcher")
    exe = [str(Path(found).absolute())] if found else [sys.executable, "-m", "agents.cli"]
    workdir = str(install_dir())
    state = str(Path(args.state_dir).resolve())
    path = f"{Path(exe[0]).parent}:/usr/local/bin:/usr/bin:/bin"
    cmd = [*exe, "--state-dir", state, "run", "--from-step", f"{args.from_step:g}", "--resume-if-crashed"]
    for option, value in (("--config", args.config), ("--pipeline", args.pipeline)):
        if value:
            cmd += [option, str(Path(value).resolve())]
    log = f"{state}/logs/cron.log"
    redirect = f">> {shlex.quote(log)} 2>&1 < /dev/null"
    # the log's folder is made first: the shell opens `>> cron.log` before watcher runs (and makes .watcher/)
    command = (
        f"mkdir -p {shlex.quote(str(Path(log).parent))} && cd {shlex.quote(workdir)} && "
        f"PATH={shlex.quote(path)} {shlex.join(cmd)} {redirect}"
    )
    line = f"{cron_schedule(args.every)} {cron_escape(command)}"
    mkdir = f"mkdir -p {shlex.quote(str(Path(log).parent))}"
    service = shlex.quote(f"{mkdir} && exec {shlex.join(cmd)} {redirect}").replace("%", "%%")  # systemd: %%
    print("# crontab -e, then add (exit 75 = a run was still going: harmless):")
    print(f"PATH={path}")
    print(line)
    print()
    print("# /etc/systemd/system/watcher.service")
    print(f"""[Unit]
Description=watcher supervised pipeline run
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={workdir}
Environment=PATH={path}
ExecStart=/bin/sh -c {service}
SuccessExitStatus=75
""")
    print("# /etc/systemd/system/watcher.timer   (then: systemctl enable --now watcher.timer)")
    print(f"""[Unit]
Description=Run watcher every {args.every}

[Timer]
OnBootSec=5min
OnUnitActiveSec={seconds}s
Persistent=true

[Install]
WantedBy=timers.target""")
    return 0
