"""A long-lived SSH channel as a `Session` (the slot workers' link to a rig): stdin written as needed,
stdout and stderr read back as capped lines by one reader thread."""

from __future__ import annotations

import contextlib
import select
import threading
from typing import Any

import paramiko

from cluster.errors import TransportError
from cluster.transport.base import LineSplitter, Session


class SSHSession(Session):
    """One channel left open: stdin written as needed, stdout and stderr streamed back line by line by one
    reader thread. The remote command runs under `timeout` like every other; closing the channel (or losing
    the link) closes the remote process's stdin, which is how a slot worker learns to exit."""

    def __init__(self, node: str, command: str, chan: paramiko.Channel, release: Any) -> None:
        super().__init__(node, command)
        self.chan = chan
        self._release = release
        self._write_lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True, name=f"{node}-session").start()

    def _pump(self) -> None:
        out, err = LineSplitter(self._push, "out"), LineSplitter(self._push, "err")
        chan, code = self.chan, None
        try:
            while True:
                busy = False
                while chan.recv_ready():
                    data = chan.recv(1 << 16)
                    if not data:
                        break
                    out.feed(data)
                    busy = True
                while chan.recv_stderr_ready():
                    err.feed(chan.recv_stderr(1 << 16))
                    busy = True
                if busy:
                    continue
                if chan.exit_status_ready() and chan.eof_received:
                    code = chan.recv_exit_status()
                    break
                if chan.closed or chan.get_transport() is None or not chan.get_transport().is_active():
                    code = chan.recv_exit_status() if chan.exit_status_ready() else None
                    break
                select.select([chan], [], [], 0.01 if chan.eof_received else 0.5)
        except (paramiko.SSHException, EOFError, OSError):
            code = None
        finally:
            out.close()
            err.close()
            with contextlib.suppress(Exception):
                chan.close()
            self._release()
        self._finish(-1 if code == -1 else code)

    def write(self, data: bytes) -> None:
        try:
            with self._write_lock:
                self.chan.sendall(data)
        except (paramiko.SSHException, EOFError, OSError) as err:
            raise TransportError(self.node, f"cannot write to the remote process: {err}", cause=err) from None

    def close_stdin(self) -> None:
        with self._write_lock, contextlib.suppress(paramiko.SSHException, EOFError, OSError):
            self.chan.shutdown_write()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.chan.close()
