"""One contract for every transport: the same tests run on LocalExecutor and on SSHExecutor to a
real sshd fake rig. Whatever a step does through an Executor must behave the same on both."""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fakerig
import pytest

from cluster.config import NodeConfig
from cluster.errors import CommandTimeoutError
from cluster.transport import executor_for
from cluster.transport.base import Executor

pytestmark = pytest.mark.integration

HOSTILE = [
    "plain",
    "with spaces  and\ttabs",
    "semi;colon && echo INJECTED",
    "$(echo INJECTED)",
    "`echo INJECTED`",
    "quotes ' and \" mixed",
    "new\nline",
    "glob * ? [a]",
    "-n",
    "back\\slash",
]


@pytest.fixture(scope="module")
def rig() -> Iterator[fakerig.FakeRig]:
    reason = fakerig.available()
    if reason:
        pytest.skip(reason)
    factory = fakerig.RigFactory(fakerig.private_base("contract"))
    try:
        yield factory.make(1, gpus=2)[0]
    finally:
        factory.stop_all(remove=True)


@pytest.fixture(params=["local", "ssh"])
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Executor]:
    if request.param == "local":
        node = NodeConfig(name="local", transport="local", workdir=str(fakerig.REPO_ROOT))
        ex = executor_for(node)
    else:
        rig = request.getfixturevalue("rig")
        ex = executor_for(rig.node_config(), fakerig.cluster_config([rig]).timeouts)
    try:
        yield ex
    finally:
        ex.close()


@pytest.fixture
def scratch(executor: Executor, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A directory both the executor's user and the test can write."""
    if executor.node.transport == "ssh":
        rig = request.getfixturevalue("rig")
        path = rig.ramdisk / f"t-{uuid.uuid4().hex[:8]}"
        executor.run(["mkdir", "-p", str(path)])
        return str(path)
    return str(tmp_path)


def test_exit_codes_and_streams(executor: Executor) -> None:
    ok = executor.run("echo out; echo err >&2")
    assert (ok.exit_code, ok.stdout, ok.stderr, ok.ok) == (0, "out\n", "err\n", True)
    bad = executor.run("exit 3")
    assert bad.exit_code == 3 and not bad.ok
    assert bad.node == executor.name and bad.duration_s >= 0


def test_stdin_reaches_the_command(executor: Executor) -> None:
    data = "line one\nline 'two' $(x)\n" * 1000
    res = executor.run(["wc", "-c"], stdin=data)
    assert int(res.stdout.strip()) == len(data.encode())


def test_env_is_applied_and_node_env_kept(executor: Executor) -> None:
    res = executor.run('printf "%s|%s" "$WATCHER_A" "$WATCHER_B"', env={"WATCHER_A": "a b;c", "WATCHER_B": "$(x)"})
    assert res.stdout == "a b;c|$(x)"


@pytest.mark.parametrize("arg", HOSTILE)
def test_hostile_arguments_arrive_intact(executor: Executor, arg: str) -> None:
    res = executor.run([sys.executable, "-c", "import sys; sys.stdout.write(repr(sys.argv[1:]))", arg, "x"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == repr([arg, "x"])
    assert "INJECTED" not in res.stdout.replace(arg, "")


def test_hostile_env_values_and_paths(executor: Executor, scratch: str) -> None:
    for value in HOSTILE:
        res = executor.run('printf "%s" "$V"', env={"V": value})
        assert res.stdout == value
    odd = os.path.join(scratch, "dir with 'quote' ;$(echo no)")
    assert executor.run(["mkdir", "-p", odd]).ok
    res = executor.run("pwd", cwd=odd)
    assert res.stdout.strip() == odd


def test_timeout_ends_the_remote_process(executor: Executor) -> None:
    marker = f"watcher-timeout-{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError) as info:
        executor.run(["sh", "-c", f"sleep 30; echo {marker}", marker], timeout=1.0)
    assert time.monotonic() - started < 6
    assert info.value.node == executor.name
    # The sleeping child must be gone too, not orphaned on the node.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ps = executor.run(["ps", "-eo", "args"]).stdout
        if not any(marker in line and "ps -eo" not in line for line in ps.splitlines()):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"process with {marker} still running after timeout")


def test_big_output_does_not_deadlock(executor: Executor) -> None:
    size = 10 * 1024 * 1024
    res = executor.run(f"head -c {size} /dev/zero | tr '\\0' a; head -c 100000 /dev/zero | tr '\\0' e >&2", timeout=60)
    assert len(res.stdout) == size and len(res.stderr) == 100000


def test_concurrent_use_from_threads(executor: Executor) -> None:
    def one(i: int) -> str:
        return executor.run(["sh", "-c", f"sleep 0.2; echo {i}"]).stdout.strip()

    with cf.ThreadPoolExecutor(max_workers=12) as pool:
        outs = list(pool.map(one, range(24)))
    assert outs == [str(i) for i in range(24)]


def test_put_get_round_trip(executor: Executor, scratch: str, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(300_000)
    src.write_bytes(payload)
    remote = os.path.join(scratch, "deep dir", "file;name.bin")
    executor.put(src, remote)
    back = tmp_path / "back" / "copy.bin"
    executor.get(remote, back)
    assert back.read_bytes() == payload
    listing = executor.run(["ls", "-a", os.path.dirname(remote)]).stdout.split()
    assert not [name for name in listing if ".tmp" in name], "temp files left behind"
