"""The body of a slot's Ray actor: the worker command run in-process, chunk after chunk, on the slot's GPU.

A slot's actor is one Ray worker process on the slot's node (ray_runner.py places it). Its environment is the
slot's (`attempt.slot_env`: HIP_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES or one CPU thread, WATCHER_SLOT, the
node's env), set in `__init__`, before anything in the process touches a GPU: the actor asks Ray for no GPU, so
Ray leaves these variables alone and the operators' GPU indices (excluded and quarantined ones never get an
actor) are the ones used. It works in the node's `workdir`, as commands over SSH do.

Each chunk runs the worker command exactly as the one-shot worker process would run it, only without the
process start: `python -m MODULE ARGS` (or `python SCRIPT ARGS`) is executed here as `__main__`, its stdin the
job's JSON, its stdout captured, `SystemExit` read as the exit code, an uncaught exception as exit 1 with its
traceback on stderr. So `python -m pipeline.worker pipeline.prng.jobs` dispatches through the same JOBS table, and
the coordinator judges the answer with the same `attempt.judge` as in the other modes. Interpreter options
(`-S`, `-u`, ...) have no meaning in a running interpreter and are skipped.

Nothing here imports Ray: the class is made an actor by ray_backend.py, and is tested in-process as it is.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import io
import os
import sys
import threading
import time
import traceback
from collections import deque
from types import CodeType
from typing import Any

STDERR_KEEP = 400  # lines of a chunk's stderr kept for its failure record
_FLAG_LETTERS = frozenset("bBdEiIOqsSuvx")  # interpreter options that take no value (may be combined: -Su)
_VALUE_FLAGS = frozenset({"-W", "-X", "--check-hash-based-pycs"})


def split_argv(argv: list[str]) -> tuple[str, str, list[str]]:
    """`python` arguments -> ("module", name, args) or ("script", path, args); ValueError for `-c` or nothing."""
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "-m":
            if not rest:
                raise ValueError("-m without a module name")
            return "module", rest[0], rest[1:]
        if arg in _VALUE_FLAGS:
            rest = rest[1:]
        elif arg[:2] in ("-W", "-X") or (arg.startswith("-") and len(arg) > 1 and set(arg[1:]) <= _FLAG_LETTERS):
            continue
        elif arg.startswith("-"):
            raise ValueError(f"the worker command's option {arg!r} cannot run in a Ray actor")
        else:
            return "script", arg, rest
    raise ValueError("the worker command names no module (-m) or script")


class _Tail(io.TextIOBase):
    """stderr during a chunk: every line kept (the last STDERR_KEEP) and passed on to the actor's own log."""

    def __init__(self, passthrough: Any) -> None:
        self.lines: deque[str] = deque(maxlen=STDERR_KEEP)
        self._partial = ""
        self._passthrough = passthrough

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with contextlib.suppress(Exception):
            self._passthrough.write(text)
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(parts)
        return len(text)

    def text(self) -> str:
        return "\n".join([*self.lines, self._partial] if self._partial else self.lines)


def memory_facts() -> tuple[int, int]:
    """(this process's resident bytes, the machine's memory in bytes); 0 where /proc does not say."""
    rss = total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo") as fh:
            total = next((int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:")), 0)
    return rss, total


def start_ticks(pid: int | str = "self") -> int:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22): with the pid, it names this
    process for good, so a kill sent later cannot hit another process that got the pid meanwhile."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


class SlotActor:
    """One slot's worker, alive as long as its actor. `run` takes one chunk at a time; `ping` answers while a
    chunk runs (the actor has two threads), which is how the coordinator tells a busy actor from a hung one."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: str) -> None:
        os.environ.update(env)  # before the first GPU call: the job's imports come later
        self.kind, self.target, self.args = split_argv(argv)
        home = os.path.expanduser(workdir)
        os.chdir(home if os.path.isabs(home) else os.path.join(os.path.expanduser("~"), home))
        # what `python -m` (the working directory) or `python SCRIPT` (its folder) puts first on sys.path
        first = os.getcwd() if self.kind == "module" else os.path.dirname(os.path.abspath(self.target))
        if first not in sys.path:
            sys.path.insert(0, first)
        self.busy_since: float | None = None
        self.tail: _Tail | None = None  # the running chunk's stderr
        self._lock = threading.Lock()
        self._main: tuple[CodeType, dict[str, Any]] | None = None

    def hello(self) -> dict[str, Any]:
        """What the slot workers' hello says: the version installed here, the process, the machine's memory."""
        from cluster.files import installed_version

        version = installed_version()
        return {"version": version, "pid": os.getpid(), "started": start_ticks(), "mem_total": memory_facts()[1]}

    def ping(self, lines: int = 40) -> dict[str, Any]:
        """Alive (answered on the actor's second thread while a chunk runs), with the chunk's progress as the
        worker protocol module last heard it from the handler (its `_progress`, which serve mode's heartbeats
        carry too) and the last `lines` of the chunk's stderr so far: what a killed actor's record keeps."""
        busy, tail = self.busy_since, self.tail
        module = sys.modules.get(self.target) if self.kind == "module" and busy is not None else None
        progress = getattr(module, "_progress", 0)
        return {
            "progress": progress if isinstance(progress, int) and not isinstance(progress, bool) else 0,
            "elapsed": round(time.monotonic() - busy, 3) if busy is not None else 0.0,
            "stderr": "\n".join(tail.text().splitlines()[-lines:]) if tail is not None else "",
        }

    def quit(self) -> None:
        """End this process now, a chunk in flight too (stdin closed, in the other modes). The caller's reference
        fails once the process is gone, which is how a stop knows the GPU is free."""
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(0)

    def run(self, chunk_id: str, attempt: int, job: Any) -> dict[str, Any]:
        """One chunk: {"exit", "stdout", "stderr", "rss"}, as the one-shot worker process would have ended."""
        import json

        with self._lock:
            os.environ["WATCHER_CHUNK_ID"] = chunk_id
            os.environ["WATCHER_ATTEMPT"] = str(attempt)
            module = sys.modules.get(self.target) if self.kind == "module" else None
            if module is not None and isinstance(getattr(module, "_progress", None), int):
                module._progress = 0  # type: ignore[attr-defined]
            out, err = io.StringIO(), _Tail(sys.__stderr__)
            saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
            sys.argv = [self.target, *self.args]
            sys.stdin, sys.stdout, sys.stderr = io.StringIO(json.dumps(job)), out, err
            self.tail, self.busy_since = err, time.monotonic()
            try:
                code = self._execute()
            finally:
                sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
                self.busy_since = None
            return {"exit": code, "stdout": out.getvalue(), "stderr": err.text(), "rss": memory_facts()[0]}

    def _code(self) -> tuple[CodeType, dict[str, Any]]:
        """The command's code object (read once) and the globals a fresh `__main__` starts with. What runpy does,
        without touching sys.modules: Ray's own threads in this process keep their `__main__`."""
        if self._main is None:
            if self.kind == "module":
                spec = importlib.util.find_spec(self.target)
                if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
                    raise ImportError(f"No module named {self.target}")
                code = spec.loader.get_code(self.target)
                if code is None:
                    raise ImportError(f"{self.target} has no code to run")
                base = {
                    "__file__": spec.origin,
                    "__spec__": spec,
                    "__package__": spec.parent,
                    "__loader__": spec.loader,
                }
            else:
                with open(self.target, "rb") as fh:
                    code = compile(fh.read(), self.target, "exec")
                base = {"__file__": self.target, "__package__": None}
            self._main = (code, base)
        return self._main

    def _execute(self) -> int:
        try:
            code, base = self._code()
            exec(code, {"__name__": "__main__", "__builtins__": builtins, **base})
        except SystemExit as done:
            code = done.code
            if code is None or isinstance(code, int):
                return code or 0
            sys.stderr.write(f"{code}\n")
            return 1
        except BaseException:  # what an uncaught exception does to a process: traceback on stderr, exit 1
            sys.stderr.write(traceback.format_exc())
            return 1
        return 0
