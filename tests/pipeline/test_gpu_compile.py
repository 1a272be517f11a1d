"""The GPU kernel source compiled for the real targets, without a GPU: NVRTC (the nvidia-cuda-nvrtc wheel, loaded
with ctypes) for sm_80 and sm_90, and clang's HIP front end for gfx1030 (the rigs' RX 6600, RDNA2) and gfx1100
(RDNA3), with tests/pipeline/shims/hip.h standing in for the ROCm headers hipRTC has built in. A kernel the rigs'
compiler would refuse fails here, not at a rig's first chunk; the CPU-shim tests (test_gpu_kernels.py) cannot see
that, since g++ accepts more than NVRTC and hipRTC do. Each binary must hold every kernel of source.KERNELS.

A missing compiler skips with the reason (`scripts/setup.sh --test` installs both).
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.prng.kernels.gpu.plan import Plan
from pipeline.prng.kernels.gpu.source import KERNELS, source

SHIMS = Path(__file__).resolve().parent / "shims"
CLANGS = ("clang-19", "clang-18", "clang-17", "clang-16", "clang")
AMD_TARGETS = ("gfx1030", "gfx1100")


def nvrtc_library() -> Path | None:
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("lib/libnvrtc.so*"))
    return next((p for p in found if "builtins" not in p.name and ".alt." not in p.name), None)


def nvrtc_compile(lib: ctypes.CDLL, text: str, arch: str) -> tuple[int, str, bytes]:
    """(nvrtcResult of the compile, the log, the cubin)."""
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), text.encode(), b"kernels.cu", 0, None, None) == 0
    try:
        opts = [f"--gpu-architecture={arch}".encode()]
        rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        cubin = b""
        if rc == 0:
            lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            assert lib.nvrtcGetCUBIN(prog, buf) == 0
            cubin = buf.raw
        return rc, log.value.decode(errors="replace"), cubin
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


@pytest.fixture(scope="module")
def nvrtc() -> ctypes.CDLL:
    path = nvrtc_library()
    if path is None:
        pytest.skip("NVRTC not installed: pip install nvidia-cuda-nvrtc-cu12 (scripts/setup.sh --test)")
    return ctypes.CDLL(str(path))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_kernel(nvrtc: ctypes.CDLL, arch: str) -> None:
    rc, log, cubin = nvrtc_compile(nvrtc, source(), arch)
    assert rc == 0, log
    assert "warning" not in log.lower(), log
    missing = [k for k in KERNELS if f".text.{k}\0".encode() not in cubin]
    assert not missing, f"{arch}: no code for {missing}"


def test_nvrtc_refuses_what_it_should(nvrtc: ctypes.CDLL) -> None:
    """The NVRTC check is live: a host-only call in a kernel (fine for g++) is an error for it."""
    text = source().replace("SEEDS(i, n) out[i] = mt_temper(value + i) * 3u;", 'puts("");')
    rc, log, _ = nvrtc_compile(nvrtc, text, "sm_90")
    assert rc != 0 and "puts" in log


def hip_clang() -> str | None:
    """The first clang that knows both AMD targets (Debian's clang-14 lacks gfx1100)."""
    for name in CLANGS:
        exe = shutil.which(name)
        if exe is None:
            continue
        probes = [[exe, "--target=amdgcn-amd-amdhsa", f"-mcpu={t}", "-nogpulib", "-x", "c", "-fsyntax-only",
                   "/dev/null"] for t in AMD_TARGETS]  # fmt: skip
        if all(subprocess.run(p, capture_output=True).returncode == 0 for p in probes):
            return exe
    return None


def hip_compile(clang: str, text: str, target: str, out: Path) -> subprocess.CompletedProcess:
    src = out.with_suffix(".cu")
    src.write_text(text, encoding="utf-8")
    cmd = [clang, "-x", "hip", f"--offload-arch={target}", "-nogpulib", "-nogpuinc", "--cuda-device-only", "-O3",
           "-Wall", "-Werror", "-include", str(SHIMS / "hip.h"), "-c", "-o", str(out), str(src)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def clang() -> str:
    exe = hip_clang()
    if exe is None:
        pytest.skip("no clang knowing gfx1030 and gfx1100: apt-get install clang-19 lld-19 (scripts/setup.sh --test)")
    return exe


@pytest.mark.parametrize("target", AMD_TARGETS)
def test_hip_front_end_compiles_every_kernel(clang: str, target: str, tmp_path: Path) -> None:
    proc = hip_compile(clang, source(), target, tmp_path / f"kernels-{target}.o")
    assert proc.returncode == 0, proc.stderr[-4000:]
    binary = (tmp_path / f"kernels-{target}.o").read_bytes()
    missing = [k for k in KERNELS if f"{k}.kd\0".encode() not in binary]  # an AMDGPU kernel descriptor each
    assert not missing, f"{target}: no kernel descriptor for {missing}"


def test_hip_front_end_refuses_what_it_should(clang: str, tmp_path: Path) -> None:
    """The HIP check is live: a host-only call in a kernel is an error for it too."""
    text = source().replace("SEEDS(i, n) out[i] = mt_temper(value + i) * 3u;", 'puts("");')
    proc = hip_compile(clang, text, "gfx1030", tmp_path / "bad.o")
    assert proc.returncode != 0 and "puts" in proc.stderr


def test_every_plan_names_a_kernel_of_the_source() -> None:
    """The plans launch kernels by name: every name they can produce is one the source defines."""
    from pipeline.prng.generators.reference import GENERATORS
    from pipeline.prng.kernels.gpu.filters import filter_plan
    from pipeline.prng.sieve import SieveSpec

    names = {filter_plan(SieveSpec(g, (1, 2), 0.5, offset=offset)).kernel for g in GENERATORS for offset in (0, 300)}
    names |= {f"walk_java_{k}" for k in range(3)} | {f"walk_mt_{k}_{b}" for k in range(5) for b in (0, 1)}
    assert names <= set(KERNELS)
    assert len(set(KERNELS)) == len(KERNELS) == 35
    assert Plan("probe", ()).kernel in KERNELS
