"""The GPU kernel source on the CPU: compiled as C++ by the system compiler with shims/cpu.h in front, loaded with
ctypes, and launched through the same plans a GPU gets (pipeline.prng.kernels.gpu.plan). CI has no GPU; this runs
the very text CuPy compiles on a rig, with AddressSanitizer and UBSan on where the tests ask for them.

A library built with ASan loads only into a process that has the ASan runtime first: the tests run such code in a
subprocess started with `sanitizer_env()` (LD_PRELOAD of the compiler's libasan).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from pipeline.prng.kernels.gpu.plan import Launch, Plan
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


class CpuBackend:
    """pipeline.prng.kernels.gpu.plan.Backend on the CPU shim."""

    def __init__(self, lib: Path) -> None:
        self.lib = ctypes.CDLL(str(lib))
        self.lib.shim_index.restype = None
        self.launches = 0

    def load(self, plan: Plan) -> Launch:
        kernel = getattr(self.lib, plan.kernel)
        kernel.restype = None
        tables = [_c_arg(a) for a in plan.args]

        def launch(start: int, n: int, cap: int) -> tuple[np.ndarray, int]:
            out = np.zeros(cap * plan.row_words, dtype=np.uint32)
            count = np.zeros(1, dtype=np.uint32)
            scratch = [np.zeros(plan.scratch_words * n, dtype=np.uint32)] if plan.scratch_words else []
            args = [ctypes.c_uint64(start), ctypes.c_uint32(n), *tables, *map(_c_arg, scratch)]
            args += [_c_arg(out), _c_arg(count), ctypes.c_uint32(cap)]
            for block in range(GRID):
                for thread in range(BLOCK):
                    self.lib.shim_index(block, thread, BLOCK, GRID)
                    kernel(*args)
            self.launches += 1
            got = int(count[0])
            return out.reshape(-1, plan.row_words)[: min(got, cap)].copy(), got

        return launch
