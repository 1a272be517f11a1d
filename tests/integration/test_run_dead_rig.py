"""`watcher run` through the motivating incident: a rig killed (sshd and its workers) in the middle of
step 1. With enough healthy slots left the run goes on without it, says so, records it, posts the webhook
once for it (every later gate finds it dead again), and ends with the same step 2 survivors as a fault-free
run; below health.min_healthy_gpus it stops with exit 69 naming the rig.

`reference_survivors` (the fault-free run, made once per test process) is shared with
test_gpu_faults_run.py: a watcher run costs ~15 s of the suite's budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fakerig
import pytest
import yaml

from cluster.errors import StoreError
from pipeline.store import RunStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
ENV = {k: v for k, v in os.environ.items() if k not in {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"}}


def setup(tmp: Path, rigs, min_healthy: int, webhook_url: str | None = None) -> list[str]:
    spec = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    spec["data"].update(history=str(REPO / "data" / "history.json"), offset_range=[6, 8], skip_range=[1, 2])
    spec["steps"][0]["params"].update(trials=12, max_seeds=20_000)
    spec["steps"][1]["params"]["chunk_seeds"] = 1 << 19
    spec["steps"][2]["params"]["trials"] = 4
    spec["agent"]["limits"] = {"retries_per_step": 0, "total_retries": 0}
    if webhook_url:
        spec["agent"]["webhook_url"] = webhook_url
    (tmp / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    config = fakerig.cluster_config(rigs, health={"check_torch_devices": False, "min_healthy_gpus": min_healthy},
                                    scheduler={"backoff_s": 0.05})  # fmt: skip
    (tmp / "cluster.json").write_text(config.model_dump_json())
    return ["--pipeline", str(tmp / "pipeline.yaml"), "--config", str(tmp / "cluster.json")]


def watcher_run(tmp: Path, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "agents.cli", "--state-dir", str(tmp / "state"), "run", "--from-step", "1", *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, env=ENV)  # fmt: skip


def survivors(tmp: Path):
    return json.loads((tmp / "state" / "outputs" / "bidirectional_survivors.json").read_text())["data"]


_REFERENCE: dict[str, Any] = {}


def reference_survivors(tmp: Path, rig: fakerig.FakeRig) -> Any:
    """Step 2's survivors of a fault-free `watcher run` on one healthy rig (the plan `setup` writes), run
    once per test process."""
    if "survivors" not in _REFERENCE:
        tmp.mkdir(parents=True, exist_ok=True)
        proc = watcher_run(tmp, setup(tmp, [rig], 1))
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, out
        _REFERENCE["survivors"] = survivors(tmp)
    return _REFERENCE["survivors"]


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server that keeps every JSON body POSTed to it: (its URL, the bodies)."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            bodies.append(json.loads(self.rfile.read(length) or b"{}"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T0K3N", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def kill_mid_step1(tmp: Path, proc: subprocess.Popen, rig: fakerig.FakeRig) -> None:
    db = tmp / "state" / "watcher.db"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with RunStore(db, readonly=True) as store:
                if any(r["status"] == "done" for r in store.chunk_rows(1, 1)):
                    rig.down()
                    return
        except StoreError:
            pass  # not created yet, or being created by the run right now
        time.sleep(0.05)
    pytest.fail("watcher run ended before step 1 had a finished chunk")


@pytest.mark.parametrize("min_healthy", [2, 4])
def test_rig_killed_mid_step1(rigs, tmp_path, min_healthy) -> None:
    a, b = rigs(2, gpus=2)
    with webhook_receiver() as (url, posted):
        args = setup(tmp_path, [a, b], min_healthy, webhook_url=url)
        proc = watcher_run(tmp_path, args)
        kill_mid_step1(tmp_path, proc, b)
        out, _ = proc.communicate(timeout=400)
    if min_healthy == 4:
        assert proc.returncode == 69, out
        assert f"preflight: {b.name}: (127.0.0.1) connection refused" in out, out
        return
    assert proc.returncode == 0, out
    assert f"goes on without {b.name}" in out
    with RunStore(tmp_path / "state" / "watcher.db", readonly=True) as store:
        events = store.events(kind="node_unreachable")
    assert events and all(e["node"] == b.name for e in events)
    # every gate after the kill found b dead; the webhook was posted once for it
    assert len({e["step"] for e in events}) >= 2, events
    assert [p["reason"].startswith(f"running without {b.name}: ") for p in posted] == [True], posted
    # the same survivors as a fault-free run on the healthy rig alone
    assert survivors(tmp_path) == reference_survivors(tmp_path / "ref", a)
