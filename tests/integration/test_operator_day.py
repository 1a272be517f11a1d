"""An operator's first day, driven through the CLI as they would: a run watched on a terminal, a run SIGKILLed and
looked at with `status`, `--json`, `metrics` and a pipe, a halt during step 1, a RETRY pending when a run
stopped, Ctrl-C on the dashboard, the printed cron line run by a shell, and a disk that fills up.

Two real runs of a tiny pipeline are shared by most assertions (one on a pseudo-terminal, one SIGKILLed then
resumed), so the module stays within a minute or two on two cores."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml

from cluster.errors import StoreError
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
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


# --- a run watched on a terminal -------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def fresh_kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty numba cache for this module's runs: the first compiles (and says so), the later ones load."""
    path = tmp_path_factory.mktemp("kernels")
    ENV["NUMBA_CACHE_DIR"] = str(path)
    yield path
    del ENV["NUMBA_CACHE_DIR"]


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[str]]:
    tmp = tmp_path_factory.mktemp("terminal")
    code, raw = on_terminal([*cli(tmp), "run", "--from-step", "1", *tiny(tmp)], REPO)
    return tmp, code, screen(raw)


def test_a_terminal_gets_one_progress_line_per_step_with_logs_above_it(
    terminal_run: tuple[Path, int, list[str]],
) -> None:
    _tmp, code, shown = terminal_run
    assert code == 0, "\n".join(shown)
    assert shown.index("compiling kernels (first run only)") < shown.index(next(x for x in shown if BAR.match(x)))
    bars = [line for line in shown if BAR.match(line)]
    # one display per step that ran jobs, redrawn in place (not one per trial round), ending complete
    assert [b.split()[1] for b in bars] == ["1", "2", "2.5", "3"], "\n".join(shown)
    assert "trials 24/24" in bars[0] and re.search(r"480\.0k/480\.0k seeds · [\d.]+[kMG]? seeds/s", bars[0])
    assert "16.8M/16.8M seeds" in bars[1]  # seeds, not (seed, offset) pairs: 2**24 seeds at 3 offsets
    assert all("failures 0" in b for b in bars)
    # every other line is whole: printed above the display, never glued onto it
    assert not [line for line in shown if "━" in line and not BAR.match(line)]
    assert any(line.startswith("step 1: survivors=") for line in shown)
    assert "seed 12345678 recovered: holdout match 100% (chance 0.1%)" in shown


def test_decisions_and_the_verdict_are_in_watcher_log(terminal_run: tuple[Path, int, list[str]]) -> None:
    tmp, _code, _shown = terminal_run
    log = (tmp / "state" / "logs" / "watcher.log").read_text()
    assert re.search(r"\| INFO +\| step 1: survivors=0, .* -> PROCEED \(rules\)", log)
    assert "seed 12345678 recovered: holdout match 100%" in log and "run 1 succeeded" in log
    assert "Traceback" not in log


def test_a_ramdisk_path_that_is_a_file_and_a_missing_local_workdir_are_named(
    terminal_run: tuple[Path, int, list[str]],
) -> None:
    """Step 2's gate copies its ramdisk files first: a file in the way is named as such, not "[Errno 17]"; and a
    local node's missing workdir is no rig to ssh to."""
    tmp, _code, _shown = terminal_run
    config = json.loads((tmp / "cluster.json").read_text())
    (tmp / "in_the_way").write_text("not a directory")
    config["nodes"][0]["ramdisk_path"] = str(tmp / "in_the_way")
    (tmp / "file_ramdisk.json").write_text(json.dumps(config))
    res = watcher(tmp, "run", "--from-step", "2", "--to-step", "2", "--pipeline", str(tmp / "pipeline.yaml"),
                  "--config", str(tmp / "file_ramdisk.json"))  # fmt: skip
    assert res.returncode == 69, res.stdout + res.stderr
    assert f"{tmp / 'in_the_way'} is a file (is ramdisk_path a file?)" in res.stdout and "Errno" not in res.stdout
    config["nodes"][0].update(workdir=str(tmp / "no_such_dir"), ramdisk_path=str(tmp / "ramdisk"))
    (tmp / "no_workdir.json").write_text(json.dumps(config))
    res = subprocess.run([sys.executable, "-m", "agents.commands.preflight", "check", "--config",
                          str(tmp / "no_workdir.json"), "--state-dir", str(tmp / "state")], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=ENV)  # fmt: skip
    assert res.returncode == 69
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("FAIL local: (local)")]
    assert f"workdir '{tmp / 'no_such_dir'}' is not a directory on this machine" in line and "ssh" not in line


# --- a run killed with SIGKILL -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("killed")
    (tmp / "started").write_text(repr(time.time()))
    proc = subprocess.Popen([*cli(tmp), "run", "--from-step", "1", *tiny(tmp)], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)  # fmt: skip
    try:
        wait_for(proc, lambda s: s.chunk_counts(1, 1).get("done", 0) >= 2, "two step-1 chunks were done", tmp)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        yield tmp
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kernels_compiled_once_are_loaded_by_later_runs_and_their_workers(
    killed: Path, fresh_kernel_cache: Path
) -> None:
    """The killed run (a new coordinator and new workers) compiled nothing: the cache holds what the terminal run
    put there, nothing newer."""
    files = sorted(fresh_kernel_cache.rglob("*.nbi"))
    assert files, "the first run left no compiled kernel in NUMBA_CACHE_DIR"
    log = (killed / "state" / "logs" / "watcher.log").read_text()
    assert "compiling kernels" not in log
    assert max(f.stat().st_mtime for f in files) < float((killed / "started").read_text())


def test_a_sigkilled_run_is_crashed_in_status_json_and_metrics(killed: Path) -> None:
    res = watcher(killed, "status", "--config", str(killed / "cluster.json"))
    assert res.returncode == 3, res.stdout + res.stderr  # nothing is active
    assert "run 1: crashed" in res.stdout and "`watcher run --resume` continues it" in res.stdout
    assert "running" not in res.stdout and "ETA" not in res.stdout
    info = json.loads(watcher(killed, "status", "--json", "--config", str(killed / "cluster.json")).stdout)
    assert info["active"] is False and info["run"]["status"] == "crashed" and info["run"]["eta_s"] is None
    assert "running" not in info["run"]["chunks"]
    metrics = watcher(killed, "metrics").stdout
    assert 'watcher_runs_total{status="crashed"} 1' in metrics and "watcher_last_run_crashed 1" in metrics
    assert 'status="running"' not in metrics


def test_a_reader_that_leaves_the_pipe_gets_no_traceback(killed: Path) -> None:
    line = f"{shlex.join(cli(killed))} status --config {shlex.quote(str(killed / 'cluster.json'))} | true"
    res = subprocess.run(["sh", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=120, env=ENV)
    assert res.stderr == "", res.stderr  # `true` left before watcher wrote: BrokenPipe, said nowhere


def test_resume_refuses_what_it_would_ignore_then_finishes_quietly(killed: Path) -> None:
    for extra, named in ((["--from-step", "2"], "--from-step"), (["--set", "2.chunk_seeds=4096"], "--set")):
        res = watcher(killed, "run", "--resume", *extra, *tiny(killed))
        assert res.returncode == 2 and named in res.stderr and "cannot change them" in res.stderr, res.stderr
    res = watcher(killed, "run", "--resume", *tiny(killed))
    assert res.returncode == 0, res.stdout + res.stderr
    out = (res.stdout + res.stderr).splitlines()
    assert "resuming run 1 at step 1 (steps up to 3)" in out
    assert "step 1: resuming attempt 1 where the interrupted run left it" in out
    assert any(line.startswith("step 1 (WindowOptimizer), attempt 1:") for line in out)
    # without a terminal: no line per trial round, and the whole run fits a screen
    assert not [line for line in out if "chunks over" in line or "chunks done in" in line] and len(out) <= 30
    assert "compiling kernels (first run only)" not in out  # the terminal run compiled them into the shared cache
    after = watcher(killed, "status", "--config", str(killed / "cluster.json"))
    assert "run 1: succeeded" in after.stdout and "crashed" not in after.stdout


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
