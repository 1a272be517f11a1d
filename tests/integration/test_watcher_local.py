"""End to end on the embedded single-node default: the real CLI in subprocesses, real store, real
Optuna storage, real optuna-dashboard and (when installed) headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
WATCHER = [sys.executable, "-m", "agents.cli"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def watcher(state: Path, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*WATCHER, "--state-dir", str(state), *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def small_budget_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess]]:
    """A first attempt whose budget cannot find the planted seed (10 trials x 10K seeds)."""
    state = tmp_path_factory.mktemp("state")
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    res = watcher(state, "run", "--from-step", "1", "--set", "1.trials=10", "--set", "1.max_seeds=10000", env=env)
    yield state, res


def test_small_budget_is_retried_by_the_rules_and_recovers_the_planted_seed(small_budget_run) -> None:
    state, res = small_budget_run
    assert res.returncode == 0, res.stdout + res.stderr
    assert "seed 12345678 recovered: holdout match 100%" in res.stdout
    ranked = json.loads((state / "outputs" / "ranked_survivors.json").read_text())["data"]["ranked"]
    assert ranked[0]["seed"] == 12345678 and ranked[0]["holdout_match"] == 1.0
    store = RunStore(state / "watcher.db", readonly=True)
    attempts = [s for s in store.step_history(number=1)]
    assert attempts[0].params["trials"] == 10 and attempts[0].params["max_seeds"] == 10_000
    assert attempts[0].metrics["survivors"] == 0
    # The retry ran with exactly the parameters the decision applied.
    decisions = [d for d in store.decisions(1) if d["step"] == 1]
    assert decisions[0]["decision"] == "RETRY" and decisions[0]["advisor"] == "rules"
    assert attempts[1].params == decisions[0]["applied"]
    # 0 survivors after fewer than 30 trials: trials raised to 50, seeds unchanged
    assert attempts[1].params["trials"] == 50 and attempts[1].params["max_seeds"] == 10_000
    assert "0 survivors after only 10 trials" in decisions[0]["reason"]
    assert decisions[0]["reason"].endswith("-> next attempt: trials 50")
    # whichever step found it, the run ends with every step proceeding
    assert all(d["decision"] in {"RETRY", "PROCEED"} for d in decisions)


def test_history_and_status_and_metrics(small_budget_run) -> None:
    state, _ = small_budget_run
    hist = watcher(state, "history", "--decisions")
    assert hist.returncode == 0 and "RETRY by rules" in hist.stdout
    status = watcher(state, "status", "--json")
    assert status.returncode == 3  # nothing running
    assert json.loads(status.stdout)["run"]["status"] == "succeeded"
    metrics = watcher(state, "metrics").stdout
    assert "# TYPE watcher_runs_total counter" in metrics and 'watcher_runs_total{status="succeeded"} 1' in metrics
    for line in metrics.splitlines():
        assert line.startswith("#") or re.match(r"^[a-z_]+(\{[^}]*\})? [-0-9.e+]+$", line), line


def test_from_step_2_reuses_step_1_and_rejects_bad_outputs(small_budget_run, tmp_path: Path) -> None:
    state, _ = small_budget_run
    copy = tmp_path / "state"
    shutil.copytree(state, copy)
    ok = watcher(copy, "run", "--from-step", "2")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "step 1" not in ok.stdout and "seed 12345678 recovered" in ok.stdout
    config = copy / "outputs" / "optimal_window_config.json"
    envelope = json.loads(config.read_text())
    envelope["status"] = "in_progress"
    config.write_text(json.dumps(envelope))
    bad = watcher(copy, "run", "--from-step", "2")
    assert bad.returncode == 69
    assert "optimal_window_config.json" in bad.stdout and "in_progress" in bad.stdout
    config.write_text('{"schema": "window_config", "status": "comp')
    bad = watcher(copy, "run", "--from-step", "2")
    assert bad.returncode == 69 and "optimal_window_config.json: corrupted" in bad.stdout


def test_second_run_at_once_exits_75_and_first_is_unharmed(small_budget_run, tmp_path: Path) -> None:
    state, _ = small_budget_run
    copy = tmp_path / "state"
    shutil.copytree(state, copy)
    (copy / "watcher.lock").unlink(missing_ok=True)
    first = subprocess.Popen([*WATCHER, "--state-dir", str(copy), "run", "--from-step", "2"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        lock = copy / "watcher.lock"
        while time.monotonic() < deadline and f'"pid": {first.pid}' not in (lock.read_text() if lock.exists() else ""):
            time.sleep(0.05)
        started = time.monotonic()
        second = watcher(copy, "run", "--from-step", "2")
        # interpreter start included (0.6 s on a quiet machine, more beside the first run's two busy workers);
        # the lock check itself is instant: a second run that waited on the lock would take the first's whole run
        assert time.monotonic() - started < 10
        assert second.returncode == 75
        assert f"pid {first.pid}" in second.stderr
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err


def test_no_tty_run_logs_plain_text(small_budget_run, tmp_path: Path) -> None:
    state, _ = small_budget_run
    copy = tmp_path / "state"
    shutil.copytree(state, copy)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    res = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *WATCHER, "--state-dir", str(copy), "run",
         "--from-step", "3"],
        cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    log = (copy / "logs" / "watcher.log").read_text()
    for text in (res.stdout, res.stderr, log):
        assert "\x1b[" not in text
    assert "step 3" in log or "step 3" in res.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_optuna_dashboard_serves_the_studies(small_budget_run) -> None:
    state, _ = small_budget_run
    port = free_port()
    proc = subprocess.Popen([*WATCHER, "--state-dir", str(state), "dashboard", "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as resp:
                    body = json.loads(resp.read())
            except OSError:
                time.sleep(0.3)
        assert body is not None, "optuna-dashboard did not answer"
        names = [s["study_name"] for s in body["study_summaries"]]
        assert any(n.startswith("watcher-step1-java_lcg-") for n in names), names
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(small_budget_run, tmp_path: Path) -> None:
    state, _ = small_budget_run
    out = tmp_path / "report.html"
    res = watcher(state, "report", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["run"] == 1 and stats["steps"] and stats["decisions"]
    profile = tmp_path / "profile"
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="main-svg"') >= 3, "plots did not render"
    for title in ("optimization history", "survivors per trial", "Chunk timings per node"):
        assert title in dom.stdout
    console_errors = [
        line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)
    ]
    assert not console_errors, console_errors
