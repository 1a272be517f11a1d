"""Runs commands on the coordinator itself, as local processes: the same interface as SSH rigs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from cluster.errors import CommandTimeoutError, FileTooLargeError, TransportError
from cluster.files import atomic_file
from cluster.transport.base import (
    CappedBytes,
    Command,
    CommandResult,
    Executor,
    FileSink,
    LineSplitter,
    Session,
    capped_stderr,
    capped_stdout,
    render_command,
)


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _communicate(
    proc: subprocess.Popen[bytes], data: bytes | None, out: CappedBytes, err: CappedBytes, timeout: float | None
) -> None:
    """Like Popen.communicate, but what is kept of stdout and stderr is capped (a process is not trusted to
    be brief); raises subprocess.TimeoutExpired after `timeout` seconds."""

    def pump(stream: IO[bytes] | None, sink: CappedBytes) -> None:
        if stream is None:
            return
        with contextlib.suppress(OSError, ValueError):
            for block in iter(lambda: stream.read1(1 << 16), b""):
                sink.feed(block)

    def feed() -> None:
        if proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if data:
                proc.stdin.write(data)
            proc.stdin.close()

    threads = [threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, err), daemon=True),
               threading.Thread(target=feed, daemon=True)]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    proc.wait(timeout=timeout)
    for thread in threads:  # the pipes close when the process (and its group) are gone
        thread.join(None if deadline is None else max(0.1, deadline - time.monotonic()))
        if thread.is_alive():
            raise subprocess.TimeoutExpired(proc.args, timeout or 0.0)


class LocalSession(Session):
    """A local process in its own process group (an argv is exec'd directly, without a shell, so the worker's
    parent is the coordinator itself and it can ask the kernel to end it with its parent)."""

    def __init__(self, node: str, command: str, proc: subprocess.Popen[bytes], timeout: float | None) -> None:
        super().__init__(node, command)
        self.proc = proc
        self.pid = proc.pid
        self._write_lock = threading.Lock()
        readers = [
            threading.Thread(target=self._pump, args=(proc.stdout, "out"), daemon=True, name=f"{node}-out"),
            threading.Thread(target=self._pump, args=(proc.stderr, "err"), daemon=True, name=f"{node}-err"),
        ]
        for reader in readers:
            reader.start()
        threading.Thread(target=self._reap, args=(readers,), daemon=True, name=f"{node}-reap").start()
        self._timer: threading.Timer | None = None
        if timeout:
            self._timer = threading.Timer(timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _pump(self, stream: IO[bytes] | None, kind: str) -> None:
        if stream is None:
            return
        splitter = LineSplitter(self._push, kind)
        fd = stream.fileno()
        try:
            while data := os.read(fd, 1 << 16):
                splitter.feed(data)
        except OSError:
            pass
        splitter.close()

    def _reap(self, readers: list[threading.Thread]) -> None:
        for reader in readers:
            reader.join()
        code = self.proc.wait()
        if self._timer is not None:
            self._timer.cancel()
        for stream in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._finish(code)

    def _expire(self) -> None:
        self.timed_out = True
        self.kill()

    def write(self, data: bytes) -> None:
        stdin = self.proc.stdin
        try:
            with self._write_lock:
                if stdin is None or stdin.closed:
                    raise TransportError(self.node, "the process's stdin is closed")
                stdin.write(data)
                stdin.flush()
        except (OSError, ValueError) as err:
            raise TransportError(self.node, f"cannot write to the process: {err}", cause=err) from None

    def close_stdin(self) -> None:
        with self._write_lock, contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class LocalExecutor(Executor):
    """`sh -c` in its own process group, so a timeout ends the whole tree, not just the shell."""

    def run(
        self,
        cmd: Command,
        *,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        line = render_command(cmd)
        full_env = {**os.environ, **self.node.env, **(env or {})}
        data = stdin.encode() if isinstance(stdin, str) else stdin
        workdir = os.path.expanduser(cwd or self.node.workdir)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", line],
                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                cwd=workdir,
                start_new_session=True,
            )
        except OSError as err:
            raise TransportError(self.name, f"cannot start local process: {err}", cause=err) from err
        out, err_out = capped_stdout(), capped_stderr()
        try:
            _communicate(proc, data, out, err_out, timeout)
        except subprocess.TimeoutExpired as err:
            self._kill_group(proc)
            raise CommandTimeoutError(self.name, line, timeout or 0.0, cause=err) from None
        except BaseException:
            self._kill_group(proc)
            raise
        return CommandResult(
            node=self.name,
            command=line,
            exit_code=proc.returncode,
            stdout=out.value().decode("utf-8", "replace"),
            stderr=err_out.value().decode("utf-8", "replace"),
            duration_s=time.monotonic() - started,
        )

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=2)
                break
            except subprocess.TimeoutExpired:
                continue
        proc.communicate()

    def start(
        self,
        cmd: Command,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> Session:
        line = render_command(cmd)
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        full_env = {**os.environ, **self.node.env, **(env or {})}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                cwd=os.path.expanduser(cwd or self.node.workdir),
                start_new_session=True,
            )
        except OSError as err:
            raise TransportError(self.name, f"cannot start local process: {err}", cause=err) from err
        return LocalSession(self.name, line, proc, timeout)

    def put(self, local: Path, remote: str) -> None:
        _atomic_copy(Path(local), Path(os.path.expanduser(remote)))

    def get(self, remote: str, local: Path, *, max_bytes: int | None = None) -> None:
        try:
            src = open(os.path.expanduser(remote), "rb")  # noqa: SIM115 - closed below, after the size check
        except OSError as err:
            raise TransportError(self.name, f"cannot read {remote}: {err.strerror or err}", cause=err) from None
        with src:
            size = os.fstat(src.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise FileTooLargeError(self.name, remote, size, max_bytes)
            with atomic_file(local) as dst:
                sink = FileSink(dst, self.name, remote, max_bytes)  # the file may grow while it is read
                for block in iter(lambda: src.read(1 << 20), b""):
                    sink.feed(block)

    def close(self) -> None:
        """Nothing to release: each command is its own process."""
