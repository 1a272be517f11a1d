"""How the SSH transport fails: fast, named, actionable, and never hanging."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import fakerig
import pytest

from cluster.errors import AuthenticationError, HostKeyError, NodeUnreachableError, TransportError
from cluster.transport import executor_for
from cluster.transport.fanout import fan_out

pytestmark = pytest.mark.integration
Rigs = Callable[..., list[fakerig.FakeRig]]


def _executor(rig: fakerig.FakeRig, **overrides: object):
    return executor_for(rig.node_config(**overrides), fakerig.cluster_config([rig]).timeouts)


def test_dead_port_is_reported_at_once(rigs: Rigs) -> None:
    rig = rigs(1, gpus=1)[0]
    rig.down()
    started = time.monotonic()
    with pytest.raises(NodeUnreachableError, match="connection refused") as info:
        _executor(rig).run("true")
    assert time.monotonic() - started < 0.5
    assert info.value.node == rig.name


def test_hung_node_is_reported_within_the_connect_timeout(rigs: Rigs) -> None:
    rig = rigs(1, gpus=1)[0]
    rig.hang()
    started = time.monotonic()
    with pytest.raises(NodeUnreachableError, match="no SSH banner within 2 s") as info:
        _executor(rig).run("true")
    elapsed = time.monotonic() - started
    assert elapsed <= 2.0 + 0.6, elapsed
    assert "ssh -p" in str(info.value) and "No existing session" not in str(info.value)


def test_unknown_host_key_is_refused_with_fingerprint(rigs: Rigs, tmp_path) -> None:
    rig = rigs(1, gpus=1)[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match=r"unknown host key ssh-ed25519 SHA256:\S+ .*ssh-keyscan -p \d+ 127.0.0.1"):
        _executor(rig, known_hosts=str(empty)).run("true")
    assert empty.read_text() == ""


def test_trust_on_first_use_records_the_key(rigs: Rigs, tmp_path) -> None:
    rig = rigs(1, gpus=1)[0]
    fresh = tmp_path / "known_hosts"
    assert _executor(rig, known_hosts=str(fresh), trust_on_first_use=True).run("true").ok
    assert f"[127.0.0.1]:{rig.port} ssh-ed25519" in fresh.read_text()
    assert _executor(rig, known_hosts=str(fresh)).run("true").ok


def test_changed_host_key_is_refused(rigs: Rigs, tmp_path) -> None:
    first, second = rigs(2, gpus=1)
    lines = first.known_hosts.read_text().splitlines()
    other_key = next(line for line in lines if line.startswith(f"[127.0.0.1]:{second.port} ")).split(" ", 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"[127.0.0.1]:{first.port} {other_key}\n")
    with pytest.raises(HostKeyError, match="host key CHANGED"):
        _executor(first, known_hosts=str(forged)).run("true")


def test_wrong_key_is_an_authentication_error(rigs: Rigs, tmp_path) -> None:
    import subprocess

    rig = rigs(1, gpus=1)[0]
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(AuthenticationError, match=r"authentication failed for watchertest@127\.0\.0\.1"):
        _executor(rig, key_file=str(key)).run("true")


def test_connection_lost_mid_command_is_an_error_not_a_hang(rigs: Rigs) -> None:
    rig = rigs(1, gpus=1)[0]
    ex = _executor(rig)
    assert ex.run("true").ok
    threading.Timer(0.5, rig.down).start()
    started = time.monotonic()
    with pytest.raises(TransportError):
        ex.run("sleep 20", timeout=30)
    assert time.monotonic() - started < 10


def test_fan_out_collects_every_node(rigs: Rigs) -> None:
    good, dead, hung, failing = rigs(4, gpus=1)
    dead.down()
    hung.hang()
    failing.fail_times(5)
    config = fakerig.cluster_config([good, dead, hung, failing])
    executors = {n.name: executor_for(n, config.timeouts) for n in config.nodes}
    started = time.monotonic()
    result = fan_out(executors, ["echo", "hi"], timeout=5)
    assert time.monotonic() - started < 3.5  # the hung node costs the connect timeout, not more
    assert set(result.succeeded) == {good.name}
    assert isinstance(result.errors[dead.name], NodeUnreachableError)
    assert isinstance(result.errors[hung.name], NodeUnreachableError)
    assert result.results[failing.name].exit_code == 97
    assert set(result.failed) == {dead.name, hung.name, failing.name}
