"""Private state, webhook redaction, the halt file's bounds, and terminals that never run node text."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger

from agents.cli import main
from agents.commands.preflight import render
from agents.lock import RunLock
from agents.settings import AgentSettings
from agents.watcher import post_webhook
from cluster.errors import ConfigError
from pipeline.store import RunStore
from preflight.report import CheckResult, PreflightReport

REPO = Path(__file__).resolve().parents[2]
NASTY = "\x1b[31mRED\x1b[0m \x1b]0;owned\x07 [/x] [drm:amdgpu_job_timedout] [bold]x[/bold]"


def test_state_is_private_to_its_owner(tmp_path: Path) -> None:
    state = tmp_path / "state"
    res = subprocess.run([sys.executable, "-m", "agents.cli", "--state-dir", str(state), "halt"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    with RunStore(state / "watcher.db"):
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("HALT", "watcher.db"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name


def test_webhook_failures_log_scheme_and_host_only() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        post_webhook("http://ops:pa55word@127.0.0.1:9/hooks/T0K3N-SECRET?key=abc123", {"run": 1})
    finally:
        logger.remove(sink)
    text = "\n".join(lines)
    assert "http://127.0.0.1:9/..." in text
    for secret in ("pa55word", "T0K3N-SECRET", "abc123", "ops:"):
        assert secret not in text


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "a/b", ""])
def test_halt_file_is_a_plain_name_in_the_state_dir(name: str) -> None:
    with pytest.raises(ConfigError, match=r"limits\.halt_file"):
        AgentSettings.from_mapping({"limits": {"halt_file": name}})


def test_halt_finds_the_running_runs_own_halt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    with RunLock(state, {"halt_file": "STOP_RUN_7"}):  # a run started with another pipeline file
        assert main(["--state-dir", str(state), "halt"]) == 0
        assert (state / "STOP_RUN_7").exists() and not (state / "HALT").exists()
        assert main(["--state-dir", str(state), "resume-ok"]) == 0
        assert not (state / "STOP_RUN_7").exists()


def test_markup_and_escapes_from_nodes_are_shown_literally(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    report = PreflightReport(results=[CheckResult("gpu", "rig", "fail", f"rocm-smi key {NASTY}", "fix it", "GPU 1")])
    render(report)
    out = capsys.readouterr().out
    assert "\x1b]0" not in out and "\x07" not in out and "[/x]" in out and "[drm:amdgpu_job_timedout]" in out
    state = tmp_path / "state"
    with RunStore(state / "watcher.db") as store:
        run = store.create_run(1)
        store.start_step(run, 1, "s")
        store.record_decision(run, 1, 1, advisor="claude", decision="RETRY", reason=f"the LLM said {NASTY}",
                              raw_answer=json.dumps({"reasoning": NASTY}))  # fmt: skip
    assert main(["--state-dir", str(state), "history", "--decisions"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "[/x]" in out and "\\x1b[31mRED" in out


def test_cron_line_quotes_its_path_and_escapes_percent(tmp_path: Path) -> None:
    odd = tmp_path / "ops 100%"
    odd.mkdir()
    res = subprocess.run([sys.executable, "-m", "agents.cli", "--state-dir", str(odd / "st"), "cron", "--every", "6h"],
                         cwd=odd, capture_output=True, text=True, timeout=60)  # fmt: skip
    line = next(x for x in res.stdout.splitlines() if x.startswith("0 */6"))
    assert re.search(r"(?<!\\)%", line) is None and "ops 100\\%" in line  # cron would cut the line at a bare %
    command = line.split(" ", 5)[5].replace("\\%", "%")
    words = shlex.split(command)
    # the directories with a space are one word each: the log folder made first, then the install directory
    assert words[:3] == ["mkdir", "-p", f"{odd}/st/logs"] and words[4:6] == ["cd", str(REPO)]
    assert words[7].startswith("PATH=")


def test_a_cli_run_in_process_leaves_the_callers_umask_alone(tmp_path: Path) -> None:
    before = os.umask(0o022)
    try:
        assert main(["--state-dir", str(tmp_path / "s"), "halt"]) == 0
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
