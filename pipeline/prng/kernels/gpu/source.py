"""The one source of the GPU kernels: the .cu files of this folder, read in a fixed order into one translation unit.

Every consumer compiles exactly this text: CuPy on a rig (NVRTC on CUDA, hipRTC on ROCm), the compile tests (NVRTC
for sm_80 / sm_90, clang's HIP front end for gfx1030 / gfx1100) and the tests' CPU shim (the system C++ compiler).
The files include nothing: each consumer puts what its compiler lacks in front (the CPU and HIP shims of the tests
define `__global__`, the thread indices and `atomicAdd`; NVRTC and hipRTC have them built in). `#line` markers keep
every compiler's messages pointing at the file and line they came from.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent
FILES = ("common.cuh", "sieve.cu", "stream.cu", "mapped.cu", "variable.cu", "probe.cu")
# every extern "C" kernel of the source (the plans launch them by these names; the compile tests find each one in
# every target's binary)
KERNELS: tuple[str, ...] = (
    *(f"sieve_jump_{kind}" for kind in range(6)),
    "sieve_xorshift32",
    "sieve_mt_cursor",
    "sieve_mt_program",
    "sieve_xorshift64",
    "sieve_xorshift128",
    "sieve_xoshiro256pp",
    "sieve_sfc64",
    "sieve_philox",
    *(f"walk_java_{kind}" for kind in range(3)),
    *(f"walk_mt_{kind}_{by_array}" for by_array in (0, 1) for kind in range(5)),
    *(f"variable_{mt}{ring}" for mt in ("", "mt_") for ring in (128, 512, 2048)),
    "mt_words",
    "probe",
)


@functools.cache
def source() -> str:
    parts = []
    for name in FILES:
        parts.append(f'#line 1 "{name}"\n')
        parts.append((KERNEL_DIR / name).read_text(encoding="utf-8"))
    return "".join(parts)


@functools.cache
def source_hash() -> str:
    """What a compiled module is cached under (with the device): any edit to any file changes it."""
    return hashlib.sha256(source().encode()).hexdigest()[:16]
