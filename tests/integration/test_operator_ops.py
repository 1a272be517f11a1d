"""The operator's first day, continued: `watcher halt` during step 1, a RETRY pending when a run halted, Ctrl-C on
the dashboard, the printed cron line run by a shell, and a disk that fills up, all through the CLI."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from operator_helpers import ENV, REPO, cli, tiny, wait_for, watcher

from pipeline.store import RunStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# --- halts -----------------------------------------------------------------------------------------------------


def test_a_halt_during_step_1_is_honoured_between_rounds(tmp_path: Path) -> None:
    args = tiny(tmp_path, trials=400, max_seeds=2000)  # 50 rounds of 8 trials: an attempt of many seconds
    proc = subprocess.Popen([*cli(tmp_path), "run", "--from-step", "1", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)  # fmt: skip
    try:
        wait_for(proc, lambda s: s.chunk_counts(1, 1).get("done", 0) >= 2, "a step-1 round was done", tmp_path)
        assert watcher(tmp_path, "halt").returncode == 0
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1 and "run 1 halted" in out and "`watcher resume-ok` clears it" in out, out
    storage = f"sqlite:///{tmp_path / 'state' / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.n_trials < 400  # stopped at the next round, not at the end of the attempt
    assert out.count("halt requested") <= 1
    with RunStore(tmp_path / "state" / "watcher.db", readonly=True) as store:
        assert store.get_run(1).status == "halted"


HALT_AFTER_FIRST = """
from typing import Annotated

from pydantic import Field

from pipeline.step import Step, StepContext, StepParams, StepResult


class Params(StepParams):
    trials: Annotated[int, Field(ge=1, le=1000)] = 10


class HaltAfterFirst(Step[Params]):
    '''Attempt 1 finds nothing (the rules say RETRY) and, as an operator would, `watcher halt` lands right then.'''

    number = 1.0
    name = "halt_after_first"
    Params = Params
    advisor_params = ("trials",)
    search = "sampled"

    def run(self, ctx: StepContext[Params]) -> StepResult:
        if ctx.attempt == 1:
            (ctx.state_dir / "HALT").write_text("halted by the test")
            return StepResult({"survivors": 0, "completed_trials": ctx.params.trials, "coverage": 0.1})
        return StepResult({"survivors": 1, "significant": True, "expected_chance_survivors": 1e-9,
                           "completed_trials": ctx.params.trials})
"""


def test_a_retry_pending_when_the_run_halted_is_the_next_attempt_on_resume(tmp_path: Path) -> None:
    (tmp_path / "halt_step.py").write_text(HALT_AFTER_FIRST)
    spec = {"data": {"history": str(REPO / "data" / "history.json")},
            "steps": [{"number": 1, "class": "halt_step:HaltAfterFirst", "params": {"trials": 10}}]}  # fmt: skip
    tiny(tmp_path)  # the cluster config
    (tmp_path / "halt.yaml").write_text(yaml.safe_dump(spec))
    args = ["--pipeline", str(tmp_path / "halt.yaml"), "--config", str(tmp_path / "cluster.json")]
    env = {**ENV, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ENV.get('PYTHONPATH', '')}"}

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli(tmp_path), *extra], cwd=REPO, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=env)  # fmt: skip

    first = run("run", "--from-step", "1", *args)
    assert first.returncode == 1 and "-> RETRY" in first.stdout and "run 1 halted" in first.stdout, first.stdout
    assert run("resume-ok").returncode == 0
    resumed = run("run", "--resume", *args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "step 1: resuming with the RETRY decided on attempt 1" in resumed.stdout
    assert "step 1 (HaltAfterFirst), attempt 2: {'trials': 50}" in resumed.stdout  # numbered as the run counts
    with RunStore(tmp_path / "state" / "watcher.db", readonly=True) as store:
        assert [(s.attempt, s.params) for s in store.step_history(run_id=1)] == [(1, {"trials": 10}),
                                                                               (2, {"trials": 50})]  # fmt: skip


# --- the dashboard, cron, a full disk ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ctrl_c_on_the_dashboard_stops_it_quietly(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    optuna.create_study(study_name="watcher-step1-x", storage=f"sqlite:///{tmp_path / 'state' / 'optuna.db'}")
    port = free_port()
    proc = subprocess.Popen([*cli(tmp_path), "dashboard", "--port", str(port)], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the dashboard never listened")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_the_printed_cron_line_runs_in_a_shell_from_anywhere(tmp_path: Path) -> None:
    """The line makes its log folder (the shell opens `>> cron.log` before watcher runs) and runs from the
    installation, whatever directory `watcher cron` was asked from. A halt makes the real run it starts short."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = tmp_path / "state"
    printed = subprocess.run([*cli(tmp_path), "cron", "--every", "6h", *tiny(tmp_path)], cwd=elsewhere,
                             capture_output=True, text=True, timeout=60, env=ENV).stdout  # fmt: skip
    line = next(x for x in printed.splitlines() if x.startswith("0 */6 * * *"))
    assert f"cd {REPO} &&" in line
    assert watcher(tmp_path, "halt").stderr.startswith("watcher: warning: no run is active")
    assert not (state / "logs").exists()
    command = line.removeprefix("0 */6 * * * ").replace("\\%", "%")
    res = subprocess.run(["sh", "-c", command], cwd=elsewhere, capture_output=True, text=True, timeout=120, env=ENV)
    assert res.returncode == 1 and res.stderr == "", res.stderr  # halted at once; everything went to the log
    assert "run 1 halted" in (state / "logs" / "cron.log").read_text()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KiB tmpfs: the state directory fills up during step 1."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_a_few_lines_without_tracebacks(tmp_path: Path, small_disk: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "agents.cli", "--state-dir", str(small_disk / "state"), "run",
                          "--from-step", "1", *tiny(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL, env=ENV)  # fmt: skip
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr and len(lines) <= 6, res.stderr
    assert re.search(r"disk is full|No space left", lines[-1]), lines[-1]
