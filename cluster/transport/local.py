"""Runs commands on the coordinator itself, as local processes: the same interface as SSH rigs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from cluster.errors import CommandTimeoutError, TransportError
from cluster.transport.base import Command, CommandResult, Executor, render_command


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
        try:
            out, err_out = proc.communicate(data, timeout=timeout)
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
            stdout=out.decode("utf-8", "replace"),
            stderr=err_out.decode("utf-8", "replace"),
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

    def put(self, local: Path, remote: str) -> None:
        _atomic_copy(Path(local), Path(os.path.expanduser(remote)))

    def get(self, remote: str, local: Path) -> None:
        _atomic_copy(Path(os.path.expanduser(remote)), Path(local))

    def close(self) -> None:
        """Nothing to release: each command is its own process."""
