"""Trust no node: `watcher run` beside a node whose worker lies (tests/integration/forging_worker.py).

Each run has an honest local node and a "liar" whose worker is the real one behind a proxy that rewrites
its answers. For every kind of lie: the run's verdict and step 2 survivors equal a clean run's, nothing
the liar invented is claimed, the lie is stored as a chunk failure of the liar with what was wrong, a
slot that computes wrong answers is quarantined, the terminal shows no raw control character, and
(flood) the coordinator's memory and the store stay bounded.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
ENV = {k: v for k, v in os.environ.items() if k not in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}}


def setup(tmp: Path, mode: str, slot: str = "") -> list[str]:
    liar = tmp / "liar-python"
    liar.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO / "tests/integration/forging_worker.py"} "$@"\n')
    liar.chmod(0o755)
    node = {"transport": "local", "gpu_kind": "cpu", "workdir": str(REPO)}
    config = {
        "nodes": [
            {**node, "name": "good", "gpu_count": 1, "ramdisk_path": str(tmp / "ram-good")},
            {**node, "name": "liar", "gpu_count": 2, "ramdisk_path": str(tmp / "ram-liar"), "python": str(liar),
             "env": {"WATCHER_FORGE": mode, "WATCHER_FORGE_SLOT": slot}},
        ],
        "timeouts": {"connect": 5, "command": 60, "job": 300, "preflight": 30},
        "health": {"min_healthy_gpus": 1},
        "scheduler": {"backoff_s": 0.05, "backoff_max_s": 0.2},
    }  # fmt: skip
    (tmp / "cluster.json").write_text(json.dumps(config))
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    spec["data"].update(history=str(REPO / "data" / "history.json"), seed_range=[12_000_000, 12_600_000],
                        offset_range=[6, 8], skip_range=[1, 2])  # fmt: skip
    spec["steps"][0]["params"].update(trials=4, max_seeds=20_000)
    spec["steps"][1]["params"]["chunk_seeds"] = 1 << 16
    spec["steps"][2]["params"]["trials"] = 2
    spec["agent"]["limits"] = {"retries_per_step": 0, "total_retries": 0}
    (tmp / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return ["--config", str(tmp / "cluster.json"), "--pipeline", str(tmp / "pipeline.yaml")]


def run(tmp: Path, mode: str, slot: str = "") -> tuple[subprocess.CompletedProcess, int]:
    """`watcher run` under /usr/bin/time: (result, the coordinator's peak RSS in kB)."""
    args = setup(tmp, mode, slot)
    rss = tmp / "rss"
    cmd = ["/usr/bin/time", "-f", "%M", "-o", str(rss), sys.executable, "-m", "agents.cli", "--state-dir",
           str(tmp / "state"), "run", "--from-step", "1", *args]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, env=ENV)
    return res, int(rss.read_text().split()[-1])


def outcome(tmp: Path) -> dict[str, Any]:
    out = tmp / "state" / "outputs"
    sieve = json.loads((out / "bidirectional_survivors.json").read_text())["data"]
    ranked = json.loads((out / "ranked_survivors.json").read_text())["data"]
    return {"survivors": [s["seed"] for s in sieve["survivors"]], "verdict": ranked["verdict"],
            "ranked": [r["seed"] for r in ranked["ranked"]]}  # fmt: skip


def failures(tmp: Path) -> list[dict[str, Any]]:
    with RunStore(tmp / "state" / "watcher.db", readonly=True) as store:
        return store.chunk_failures(1)


def quarantined(tmp: Path) -> set[str]:
    with RunStore(tmp / "state" / "watcher.db", readonly=True) as store:
        return {f"{e.node}:{e.gpu}" for e in store.entries()}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    tmp = tmp_path_factory.mktemp("clean")
    res, rss = run(tmp, "")
    assert res.returncode == 0, res.stdout + res.stderr
    assert failures(tmp) == []
    found = outcome(tmp)
    assert found["verdict"].startswith("seed 12345678 recovered")
    return found, rss


def assert_clean_terminal(res: subprocess.CompletedProcess) -> None:
    for stream in (res.stdout, res.stderr):
        assert "\x1b" not in stream and "\x07" not in stream


@pytest.mark.parametrize(
    ("mode", "slot", "kinds", "distrusted"),
    [
        ("survivor", "", {"unverified", "canary"}, True),
        ("types", "", {"invalid"}, False),
        ("tag", "", {"invalid"}, False),
        ("no_tasks", "", {"invalid"}, False),
        ("silent", ":1", {"canary"}, True),
    ],
    ids=["forged-survivors", "wrong-types", "unknown-tag", "missing-tasks", "bit-flipping-gpu"],
)
def test_a_lying_node_changes_nothing_that_is_claimed(
    tmp_path: Path, clean: tuple[dict[str, Any], int], mode: str, slot: str, kinds: set[str], distrusted: bool
) -> None:
    res, _ = run(tmp_path, mode, slot)
    assert res.returncode == 0, res.stdout + res.stderr
    assert outcome(tmp_path) == clean[0]
    assert "Traceback" not in res.stdout
    lies = [f for f in failures(tmp_path) if f["node"] == "liar"]
    assert lies and {f["kind"] for f in lies} <= kinds, lies
    assert all(f["error"].startswith("answer rejected: ") for f in lies)
    assert not [f for f in failures(tmp_path) if f["node"] == "good"]
    if distrusted:
        gone = quarantined(tmp_path)
        assert gone and gone <= {"liar:0", "liar:1"}
        if slot:
            assert gone == {f"liar{slot}"}  # only the slot whose GPU computes garbage
    assert_clean_terminal(res)


def test_a_flooding_node_is_bounded_in_memory_store_and_terminal(
    tmp_path: Path, clean: tuple[dict[str, Any], int]
) -> None:
    res, rss = run(tmp_path, "flood")
    assert res.returncode == 0, res.stdout + res.stderr
    assert outcome(tmp_path) == clean[0]
    assert rss < clean[1] + 200 * 1024, (rss, clean[1])  # kB: under 200 MB more than a clean run
    lies = [f for f in failures(tmp_path) if f["node"] == "liar"]
    assert lies and all(len((f["stderr_tail"] or "").encode()) < 20 << 10 for f in lies)
    db = sqlite3.connect(tmp_path / "state" / "watcher.db")
    assert sum(len(r[0] or "") for r in db.execute("SELECT stderr_tail FROM chunk_failures")) < 2 << 20
    assert_clean_terminal(res)
    log = (tmp_path / "state" / "logs" / "watcher.log").read_text()
    assert "\x1b" not in log and "\\x1b[31mRED" in log  # shown, escaped, never executed
