"""`watcher run --resume` after `watcher run` itself is SIGKILLed, mid-step 1 and again mid-step 2: the run
finishes with the same step 2 and step 3 outputs and verdict as an uninterrupted run, completed trials
and finished chunks are not redone, trials left RUNNING are marked FAIL and the original steps are kept."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from operator_helpers import ENV, REPO, cli, tiny

from cluster.errors import StoreError
from pipeline.store import RunStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TRIALS = 24


def setup(tmp: Path) -> list[str]:
    """The shipped history and steps on a narrowed envelope (operator_helpers.tiny); step 1 gets no retry, so its
    window is the prior one whatever its sample finds, and an interrupted and an uninterrupted run must agree."""
    return tiny(tmp, trials=TRIALS)


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cli(tmp), "run", *args, *setup(tmp)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL, env=ENV)  # fmt: skip


def kill_when(tmp: Path, proc: subprocess.Popen, ready: Callable[[RunStore], bool], what: str) -> dict[str, Any]:
    """SIGKILL `watcher run` as soon as the store shows `ready`; returns the chunk rows seen just before."""
    db = tmp / "state" / "watcher.db"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with RunStore(db, readonly=True) as store:
                if ready(store):
                    rows = {2: store.chunk_rows(1, 2)}
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=30)
                    return rows
        except StoreError:
            pass  # not created yet, or being created by the run right now
        time.sleep(0.05)
    pytest.fail(f"watcher run ended before {what} (exit {proc.returncode})")


def step1_trials(tmp: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{tmp / 'state' / 'optuna.db'}"
    (summary,) = [s for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("watcher-step1-")]
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def outputs(tmp: Path) -> tuple[Any, Any]:
    sieve = json.loads((tmp / "state" / "outputs" / "bidirectional_survivors.json").read_text())["data"]
    ranked = json.loads((tmp / "state" / "outputs" / "ranked_survivors.json").read_text())["data"]
    return sieve, {"verdict": ranked["verdict"], "seeds": [r["seed"] for r in ranked["ranked"]]}


def test_killed_twice_and_resumed_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    reference = run(clean, "--from-step", "1", "--to-step", "3")
    assert reference.returncode == 0, reference.stdout + reference.stderr

    args = [*cli(killed), "run", "--from-step", "1", "--to-step", "3", *setup(killed)]
    first = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    # batches of 8 trials run as 2 chunks each, told when both are done: 3 done = batch 1 told, batch 2 running
    kill_when(killed, first, lambda s: s.chunk_counts(1, 1).get("done", 0) >= 3, "a step-1 batch finished")
    before = step1_trials(killed)
    done_before = {t.number for t in before if t.state == optuna.trial.TrialState.COMPLETE}
    running = {t.number for t in before if t.state == optuna.trial.TrialState.RUNNING}
    assert done_before, "killed before any trial completed"

    second = subprocess.Popen([*cli(killed), "run", "--resume", *setup(killed)], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=ENV)  # fmt: skip

    def mid_step_2(store: RunStore) -> bool:
        counts = store.chunk_counts(1, 2)
        return counts.get("done", 0) >= 2 and counts.get("pending", 0) + counts.get("running", 0) > 0

    rows = kill_when(killed, second, mid_step_2, "step 2 was half done")
    finished = {r["chunk_id"] for r in rows[2] if r["status"] == "done"}

    resumed = run(killed, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run 1 at step 2 (steps up to 3)" in resumed.stdout  # the original --to-step is kept

    trials = step1_trials(killed)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = {t.number for t in trials if t.state == optuna.trial.TrialState.FAIL}
    assert len(complete) == TRIALS and done_before <= {t.number for t in complete}  # not redone, not exceeded
    assert failed == running  # left RUNNING by the kill, marked FAIL; their blocks went to later trials
    blocks = [tuple(t.user_attrs["seed_block"]) for t in complete]
    assert len(set(blocks)) == TRIALS

    with RunStore(killed / "state" / "watcher.db", readonly=True) as store:
        after = {r["chunk_id"]: r for r in store.chunk_rows(1, 2)}
        assert all(after[c]["attempts"] == 1 for c in finished)  # finished chunks were not run again
        assert store.get_run(1).status == "succeeded"
        assert [s.status for s in store.step_history(run_id=1, number=1)] == ["succeeded"]
    assert outputs(killed) == outputs(clean)
    assert outputs(clean)[1]["seeds"][0] == 12345678
