"""The GPU kernel source on the CPU: compiled as C++ by the system compiler with shims/cpu.h in front, loaded with
ctypes, and launched through the same plans a GPU gets (pipeline.prng.kernels.gpu.plan). CI has no GPU; this runs
the very text CuPy compiles on a rig.

Two backends: `CpuBackend` loads a library into this process; `SanitizedBackend` runs a library built with
AddressSanitizer and UBSan in a child process (kernel_server.py), since an ASan library loads only where the ASan
runtime came first (LD_PRELOAD). The child does nothing but launch: the references, hypothesis and the torch scoring
stay in the test process at full speed, and every table a kernel reads is its own malloc block there (PYTHONMALLOC
=malloc), so a read one word past its end stops the child with ASan's report.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pipeline.prng.kernels.gpu.plan import Launch, Plan, word_slots
from pipeline.prng.kernels.gpu.source import source

SHIMS = Path(__file__).resolve().parent / "shims"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
GRID, BLOCK = 2, 3  # (block, thread) pairs a launch calls: the grid-stride loops' index arithmetic runs for real


def compiler() -> str | None:
    return shutil.which("g++") or shutil.which("clang++")


def build(dest: Path, *, sanitize: bool, text: str | None = None) -> Path:
    """Compile `text` (default: the kernel source) into dest/kernels.so; raises with the compiler's message."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++ or clang++): install g++")
    src = dest / "kernels.cu"
    src.write_text(text if text is not None else source(), encoding="utf-8")
    lib = dest / "kernels.so"
    flags = ["-std=c++17", "-O1", "-g", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror"]
    cmd = [cxx, *flags, *(SANITIZE if sanitize else []), "-include", str(SHIMS / "cpu.h"), "-x", "c++", str(src)]
    proc = subprocess.run([*cmd, "-o", str(lib)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{cxx} failed:\n{proc.stderr[-4000:]}")
    return lib


def sanitizer_env() -> dict[str, str]:
    """What a process that loads a sanitized library needs in its environment."""
    cxx = compiler() or "g++"
    libasan = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return {
        "LD_PRELOAD": libasan,
        "PYTHONMALLOC": "malloc",  # every Python and numpy buffer its own malloc block, so ASan sees its bounds
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }


def _c_arg(value: np.ndarray | np.generic) -> object:
    if isinstance(value, np.ndarray):
        return ctypes.c_void_p(value.ctypes.data)
    if value.dtype == np.uint64:
        return ctypes.c_uint64(int(value))
    if value.dtype == np.uint32:
        return ctypes.c_uint32(int(value))
    raise TypeError(f"kernel argument of dtype {value.dtype}: use uint32 or uint64")


class Library:
    """A compiled kernel library: launches of plans and of the mt_words kernel, numpy in and out."""

    def __init__(self, lib: Path) -> None:
        self.lib = ctypes.CDLL(str(lib))
        self.lib.shim_index.restype = None

    def launch(self, plan: Plan, start: int, n: int, cap: int) -> tuple[np.ndarray, int]:
        kernel = getattr(self.lib, plan.kernel)
        kernel.restype = None
        out = np.zeros(cap * plan.row_words, dtype=np.uint32)
        count = np.zeros(1, dtype=np.uint32)
        scratch = [np.zeros(plan.scratch_words * n, dtype=np.uint32)] if plan.scratch_words else []
        args = [ctypes.c_uint64(start), ctypes.c_uint32(n), *map(_c_arg, plan.args), *map(_c_arg, scratch)]
        args += [_c_arg(out), _c_arg(count), ctypes.c_uint32(cap)]
        for block in range(GRID):
            for thread in range(BLOCK):
                self.lib.shim_index(block, thread, BLOCK, GRID)
                kernel(*args)
        got = int(count[0])
        return out.reshape(-1, plan.row_words)[: min(got, cap)].copy(), got

    def mt_words(self, seeds: np.ndarray, slot_of: np.ndarray, rows: int) -> np.ndarray:
        out = np.zeros((rows, seeds.size), dtype=np.uint32)
        self.lib.mt_words.restype = None
        self.lib.shim_index(0, 0, 1, 1)
        self.lib.mt_words(_c_arg(seeds), ctypes.c_uint32(seeds.size), _c_arg(slot_of),
                          ctypes.c_uint32(slot_of.size - 1), _c_arg(out))  # fmt: skip
        return out


class _Backend:
    """pipeline.prng.kernels.gpu.plan.Backend over `_call(kind, *args)`."""

    launches = 0

    def _call(self, kind: str, *args: Any) -> Any:
        raise NotImplementedError

    def load(self, plan: Plan) -> Launch:
        def launch(start: int, n: int, cap: int) -> tuple[np.ndarray, int]:
            self.launches += 1
            return self._call("launch", plan, start, n, cap)  # type: ignore[no-any-return]

        return launch

    def mt_words(self, seeds32: Any, indices: Sequence[int]) -> dict[int, Any]:
        import torch

        wanted, slot_of = word_slots(indices)
        seeds = np.ascontiguousarray(seeds32.cpu().numpy().view(np.uint32))
        words = torch.from_numpy(self._call("mt_words", seeds, slot_of, len(wanted)).view(np.int32))
        return {w: words[k] for k, w in enumerate(wanted)}


class CpuBackend(_Backend):
    """The kernels in this process (no sanitizers: they need their runtime loaded first)."""

    def __init__(self, lib: Path) -> None:
        self.library = Library(lib)

    def _call(self, kind: str, *args: Any) -> Any:
        return getattr(self.library, kind)(*args)


def send(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the kernel server closed its end")
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))


class KernelServerDied(RuntimeError):
    """The sanitized child stopped (a sanitizer report, or a crash); the message holds its stderr's tail."""


class SanitizedBackend(_Backend):
    """The kernels of a sanitized library, launched by a child process (kernel_server.py) over pipes."""

    def __init__(self, lib: Path, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 (closed in close())
        server = Path(__file__).resolve().parent / "kernel_server.py"
        self.proc = subprocess.Popen([sys.executable, str(server), str(lib)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr,
                                     env={**os.environ, **sanitizer_env()})  # fmt: skip

    def _call(self, kind: str, *args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            send(self.proc.stdin, (kind, *args))
            return receive(self.proc.stdout)
        except (EOFError, BrokenPipeError):
            self.proc.wait(timeout=60)
            tail = self.stderr_path.read_bytes()[-6000:].decode(errors="replace")
            raise KernelServerDied(f"kernel server exited {self.proc.returncode}:\n{tail}") from None

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
