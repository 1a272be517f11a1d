"""One contract for every transport: the same tests run on LocalExecutor and on SSHExecutor to a
real sshd fake rig. Whatever a step does through an Executor must behave the same on both: run (exit codes,
streams, stdin, env, hostile arguments, timeouts, big output, threads), put and get (byte-exact for 0 B,
17 MiB and 200 MiB, streamed with the coordinator's memory bounded, a caller's size limit, hostile names) and
start (a long-lived session: lines both ways, a timeout, a process that dies in the middle of a line). A new
transport is proved by adding its name to the `executor` fixture's params."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakerig
import pytest

from cluster.config import NodeConfig
from cluster.errors import CommandTimeoutError, FileTooLargeError, TransportError
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


MIB = 1 << 20


@pytest.fixture(scope="module")
def big_files(rig: fakerig.FakeRig) -> dict[int, tuple[Path, str]]:
    """Files of 0 B, 17 MiB (past the 16 MiB a command's stdout keeps) and 200 MiB, with their sha256, where
    both executors can read them (the rig's ramdisk is on this machine). Each MiB differs from the others, so
    a spliced, shifted or repeated piece changes the digest."""
    folder = rig.ramdisk / "big"
    folder.mkdir(exist_ok=True)
    block = os.urandom(MIB)
    made = {}
    for size in (0, 17 * MIB, 200 * MIB):
        path, digest = folder / f"survivors-{size}.json", hashlib.sha256()
        with open(path, "wb") as fh:
            for index in range(size // MIB):
                piece = index.to_bytes(8, "little") + block[8:]
                digest.update(piece)
                fh.write(piece)
        path.chmod(0o644)
        made[size] = (path, digest.hexdigest())
    return made


def _executor(kind: str, request: pytest.FixtureRequest) -> Executor:
    if kind == "local":
        return executor_for(NodeConfig(name="local", transport="local", workdir=str(fakerig.REPO_ROOT)))
    rig = request.getfixturevalue("rig")
    return executor_for(rig.node_config(), fakerig.cluster_config([rig]).timeouts)


@pytest.fixture(params=["local", "ssh"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    ex = _executor(request.param, request)
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
    path = tmp_path / "scratch"
    path.mkdir()
    return str(path)


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


# --- files: byte-exact, streamed, bounded -----------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.parametrize("size", [0, 17 * MIB])
def test_get_is_byte_exact(executor: Executor, big_files: dict, tmp_path: Path, size: int) -> None:
    remote, digest = big_files[size]
    local = tmp_path / "got" / "survivors.json"
    executor.get(str(remote), local)
    assert local.stat().st_size == size and _sha256(local) == digest
    assert [p.name for p in local.parent.iterdir()] == ["survivors.json"], "temp files left behind"


GET_AND_MEASURE = """
import json, resource, sys
from pathlib import Path
from cluster.config import NodeConfig, Timeouts
from cluster.transport import executor_for
node, timeouts = NodeConfig.model_validate_json(sys.argv[1]), Timeouts.model_validate_json(sys.argv[2])
with executor_for(node, timeouts) as ex:
    ex.run("true")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ex.get(sys.argv[3], Path(sys.argv[4]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "peak_kib": after}))
"""


def test_a_200_mib_get_is_byte_exact_with_the_coordinators_memory_bounded(
    executor: Executor, big_files: dict, rig: fakerig.FakeRig, tmp_path: Path
) -> None:
    """The coordinator side runs in a process of its own, so its peak RSS is the get's alone."""
    remote, digest = big_files[200 * MIB]
    local = tmp_path / "survivors-200.json"
    timeouts = fakerig.cluster_config([rig]).timeouts.model_copy(update={"command": 120.0})
    proc = subprocess.run(
        [sys.executable, "-c", GET_AND_MEASURE, executor.node.model_dump_json(), timeouts.model_dump_json(),
         str(remote), str(local)],
        capture_output=True, text=True, timeout=180, cwd=fakerig.REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rss: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{executor.node.transport} get of 200 MiB: peak RSS {rss['peak_kib'] / 1024:.0f} MiB "
          f"({rss['before_kib'] / 1024:.0f} MiB before the get)")  # fmt: skip
    assert local.stat().st_size == 200 * MIB and _sha256(local) == digest
    assert rss["peak_kib"] - rss["before_kib"] < 64 * 1024, f"the get held the file in memory: {rss}"


def test_get_refuses_a_file_over_the_callers_limit(executor: Executor, big_files: dict, tmp_path: Path) -> None:
    remote, _digest = big_files[17 * MIB]
    local = tmp_path / "got" / "survivors.json"
    with pytest.raises(FileTooLargeError) as info:
        executor.get(str(remote), local, max_bytes=16 * MIB)
    message = str(info.value)
    assert "\n" not in message and f"over the limit of {16 * MIB} bytes" in message and str(remote) in message
    assert not local.exists() and (not local.parent.exists() or not list(local.parent.iterdir()))
    executor.get(str(remote), local, max_bytes=17 * MIB)  # at the limit is allowed
    assert local.stat().st_size == 17 * MIB


def test_get_of_a_missing_file_names_it(executor: Executor, scratch: str, tmp_path: Path) -> None:
    missing = os.path.join(scratch, "no such file.json")
    with pytest.raises(TransportError, match=r"cannot read .*no such file\.json"):
        executor.get(missing, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("name", ["semi;colon && echo INJECTED", "$(echo INJECTED)", "new\nline", "-n",
                                  "quotes ' and \" mixed", "glob * ? [a]"])  # fmt: skip
def test_hostile_file_names_round_trip(executor: Executor, scratch: str, tmp_path: Path, name: str) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(70_000)
    src.write_bytes(payload)
    remote = os.path.join(scratch, name)
    executor.put(src, remote)
    back = tmp_path / name
    executor.get(remote, back)
    assert back.read_bytes() == payload
    assert sorted(os.listdir(scratch)) == [name], "a hostile name wrote somewhere else, or left a temp file"


# --- start: a long-lived session ------------------------------------------------------------------------------
def _events(session: Any, until: str = "exit", seconds: float = 10.0) -> list[tuple[str, Any]]:
    got: list[tuple[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = session.read(0.5)
        if event is not None:
            got.append(event)
            if event[0] == until:
                break
    return got


def test_session_streams_lines_and_ends_on_stdin_close(executor: Executor) -> None:
    script = (
        "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"
        "    print('e', file=sys.stderr, flush=True)\n"
    )
    session = executor.start([sys.executable, "-c", script], timeout=30)
    session.write(b"hello\nworld\n")
    got: list[tuple[str, Any]] = []
    deadline = time.monotonic() + 10
    while len([e for e in got if e[0] == "out"]) < 2 and time.monotonic() < deadline:
        event = session.read(1.0)
        if event is not None:
            got.append(event)
    assert [v for k, v in got if k == "out"] == ["HELLO", "WORLD"]
    session.close_stdin()
    assert session.wait(10) and session.exit_code == 0
    assert _events(session)[-1] == ("exit", 0)


def test_a_session_that_dies_mid_line_gives_the_partial_line_then_its_exit(executor: Executor) -> None:
    script = "import os, sys\nsys.stdout.write('whole\\nhalf a li'); sys.stdout.flush(); os._exit(3)"
    session = executor.start([sys.executable, "-c", script], timeout=30)
    got = _events(session)
    assert [e for e in got if e[0] == "out"] == [("out", "whole"), ("out", "half a li")]
    assert got[-1] == ("exit", 3) and session.ended and session.exit_code == 3
    with pytest.raises(TransportError):  # its stdin is gone with it
        for _ in range(50):
            session.write(b"more\n" * 1000)
            time.sleep(0.01)


def test_a_session_ends_at_its_timeout(executor: Executor) -> None:
    started = time.monotonic()
    session = executor.start(["sleep", "30"], timeout=1.0)
    got = _events(session, seconds=15)
    assert got and got[-1][0] == "exit" and got[-1][1] != 0
    assert time.monotonic() - started < 8
