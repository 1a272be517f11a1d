"""The slot's Ray actor body, in-process (no Ray needed): it keeps the slot worker up on its node and hands back
plain data, unjudged: the answer, a failure's fields, or why the worker is refused, with the worker's state."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sched_helpers import WORKER_ARGV, local_config

from cluster.files import installed_version
from cluster.scheduler.ray_slots.actor import SlotActor, on_node, start_ticks


def _actor(tmp_path: Path, env: dict[str, str] | None = None, **policy: Any) -> SlotActor:
    config = local_config(tmp_path, {"a": 2}, heartbeat_timeout_s=1.0, **policy)
    node = config.nodes[0].model_dump()
    node["env"] = env or {}
    return SlotActor(node, 1, list(WORKER_ARGV), config.scheduler.model_dump(), {"job": 5.0}, installed_version(), 60.0)


def test_the_worker_answers_unjudged_and_its_failures_come_back_as_fields(tmp_path: Path) -> None:
    actor = _actor(tmp_path)
    try:
        assert actor.hello()["version"] == installed_version() and actor.hello()["started"] == start_ticks()
        assert actor.start_worker("c0", 1)["live"] is True
        reply = actor.run("c1", 1, {"value": 3})
        assert reply["answer"]["slot"] == "a:1" and reply["answer"]["value"] == 3 and reply["live"] is True
        assert reply["hello"]["pid"] == reply["answer"]["pid"] != os.getpid()
        failed = actor.run("c2", 2, {"value": 1, "fail_slots": ["a:1"]})["failure"]
        assert (failed["kind"], failed["exit_code"]) == ("exit", 3)
        assert failed["stderr_tail"].strip().endswith("simulated failure on a:1")
        died = actor.run("c3", 1, {"value": 1, "die_slots": ["a:1"]})
        assert died["failure"]["exit_code"] == 9 and died["live"] is False
        assert actor.run("c4", 1, {"value": 4})["answer"]["value"] == 4  # restarted
    finally:
        assert actor.stop_worker(2.0) is True


def test_an_old_worker_is_refused_and_a_stop_ends_a_chunk_in_flight(tmp_path: Path) -> None:
    assert "refused" in _actor(tmp_path, {"SCHED_WORKER_VERSION": "0.0.1"}).start_worker("c", 1)
    actor = _actor(tmp_path)
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(actor.run("c", 1, {"value": 1, "sleep": 30})))
    thread.start()
    deadline = time.monotonic() + 10
    while actor.ping()["live"] is not True and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert actor.stop_worker(2.0) is True
    thread.join(5)
    assert out["failure"]["kind"] == "transport" and "stopped" in out["failure"]["error"]


def test_the_node_is_seen_from_itself(tmp_path: Path) -> None:
    node = local_config(tmp_path, {"rig": 1}).nodes[0]
    remote = node.model_copy(update={"transport": "ssh", "workdir": "watcher"})
    assert on_node(remote).transport == "local"
    assert on_node(remote).workdir == os.path.join(os.path.expanduser("~"), "watcher")
    assert on_node(node).workdir == str(tmp_path)


@pytest.mark.parametrize("pid", ["self", os.getpid()])
def test_start_ticks_name_this_process(pid: object) -> None:
    assert start_ticks(pid) > 0 and start_ticks(pid) == start_ticks()  # type: ignore[arg-type]
    assert start_ticks(2**22 + 7) == 0
