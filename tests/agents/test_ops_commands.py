"""Operations commands without a run: cron lines, halt file, lock messages, metrics format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import main
from agents.commands.cron import cron_schedule, parse_every
from agents.lock import RunLock
from agents.logging_setup import redact
from cluster.errors import LockHeldError, UsageError
from cluster.scheduler.types import ChunkFailure, Slot
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("every", "line"), [("30m", "*/30 * * * *"), ("6h", "0 */6 * * *"), ("1d", "0 3 * * *")])
def test_cron_schedules(every: str, line: str) -> None:
    assert cron_schedule(every) == line


@pytest.mark.parametrize("bad", ["7h", "0h", "soon", "45m", "40d"])
def test_cron_rejects_what_cron_cannot_do(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_every(bad)


def test_cron_command_prints_crontab_and_systemd(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--state-dir", str(tmp_path), "cron", "--every", "6h"]) == 0
    out = capsys.readouterr().out
    assert "0 */6 * * *" in out and "--resume-if-crashed" in out and f"{tmp_path}/logs/cron.log" in out
    assert "[Timer]" in out and "OnUnitActiveSec=21600s" in out and "SuccessExitStatus=75" in out


def test_second_lock_in_another_process_names_the_holder(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        code = f"from agents.lock import RunLock; RunLock(__import__('pathlib').Path({str(tmp_path)!r})).acquire()"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
        assert res.returncode != 0 and "LockHeldError" in res.stderr
        import os

        assert f"pid {os.getpid()}" in res.stderr
    with RunLock(tmp_path):  # released cleanly: can be taken again
        pass
    with pytest.raises(LockHeldError), RunLock(tmp_path), RunLock(tmp_path):
        pass


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "plain-secret-value")
    assert "plain-secret-value" not in redact("key=plain-secret-value")
    assert redact("auth sk-ant-api03-abcdefghijklmnop") == "auth [redacted]"


def test_halt_stops_a_run_before_it_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["--state-dir", str(state), "halt"]) == 0
    code = main(
        [
            "--state-dir",
            str(state),
            "run",
            "--from-step",
            "1",
            "--pipeline",
            str(REPO / "pipeline.yaml"),
            "--config",
            str(REPO / "distributed_config.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "halted" in out
    assert main(["--state-dir", str(state), "resume-ok"]) == 0
    assert not (state / "HALT").exists()


def test_bad_override_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(tmp_path), "run", "--from-step", "1", "--set", "max_seeds=5"]) == 2
    assert "expected STEP.PARAM=VALUE" in capsys.readouterr().err
    assert main(["--state-dir", str(tmp_path), "run", "--from-step", "1", "--set", "1.max_sedes=5"]) == 78
    assert "max_sedes: unknown key" in capsys.readouterr().err
    assert main(["--state-dir", str(tmp_path), "run", "--from-step", "9"]) == 78


def test_metrics_without_runs_is_valid_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--state-dir", str(tmp_path), "metrics"]) == 0
    out = capsys.readouterr().out
    assert "# TYPE watcher_runs_total counter" in out and "watcher_last_run_succeeded 0" in out


def test_metrics_counters_count_the_whole_store_and_the_textfile_is_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More runs than any window (a counter over the newest 1,000 went down as runs went on), failures of
    every run; --textfile writes what stdout shows."""
    with RunStore(tmp_path / "watcher.db") as store:
        for _ in range(1003):
            store.finish_run(store.create_run(1), "succeeded")
        failed = store.create_run(1)
        store.finish_run(failed, "failed", "boom")
        for run in (1, failed):
            store.record_chunk_failure(run, 1, ChunkFailure("c1", 1, Slot("rig-a", 0), "exit", "boom", "python -m w"))
    assert main(["--state-dir", str(tmp_path), "metrics"]) == 0
    out = capsys.readouterr().out
    assert 'watcher_runs_total{status="succeeded"} 1003.0' in out and 'watcher_runs_total{status="failed"} 1.0' in out
    assert 'watcher_chunk_failures_total{node="rig-a"} 2.0' in out and "watcher_last_run_succeeded 0.0" in out
    textfile = tmp_path / "textfile" / "watcher.prom"
    textfile.parent.mkdir()
    assert main(["--state-dir", str(tmp_path), "metrics", "--textfile", str(textfile)]) == 0
    assert textfile.read_text() == out and capsys.readouterr().out == ""
    assert [p.name for p in textfile.parent.iterdir()] == ["watcher.prom"]
