"""An operator's first day, driven through the CLI as they would: a run watched on a terminal, a run SIGKILLed and
looked at with `status`, `--json`, `metrics` and a pipe, then resumed (tests/integration/test_operator_ops.py has
halts, the dashboard, cron and a full disk).

Two real runs of a tiny pipeline are shared by most assertions (one on a pseudo-terminal, one SIGKILLed then
resumed), so the module stays within a minute or two on two cores."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from operator_helpers import BAR, ENV, REPO, cli, on_terminal, screen, tiny, wait_for, watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    assert any(line.startswith("seed 12345678 recovered: holdout match 100% (chance 0.1%)") for line in shown)


def test_decisions_and_the_verdict_are_in_watcher_log(terminal_run: tuple[Path, int, list[str]]) -> None:
    tmp, _code, _shown = terminal_run
    log = (tmp / "state" / "logs" / "watcher.log").read_text()
    assert re.search(r"\| INFO +\| step 1: survivors=0, .* -> PROCEED \(rules\)", log)
    assert "seed 12345678 recovered: holdout match 100%" in log and "run 1 succeeded" in log
    assert "Traceback" not in log
    assert watcher(tmp, "report", "1", "--out", str(tmp / "report.html")).returncode == 0
    page = (tmp / "report.html").read_text()
    assert "<h2>GPU health timeline</h2>" in page  # the docs promise it: said even when nothing was recorded


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
