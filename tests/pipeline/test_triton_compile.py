"""Every Triton kernel compiled ahead of time for real GPU targets, and the probe that decides whether a device can
run Triton at all. No GPU is needed: Triton's bundled LLVM, ptxas and lld produce the cubin / hsaco here.

Why: the interpreter (the other Triton tests) runs kernels as numpy and accepts what the compiler refuses. A
kernel reading a plain-int module global passed every interpreter test and would have failed its first launch on a
GPU ("Cannot access global variable ... unless it is annotated with constexpr"). Targets: sm_90 (H100/H200 class),
gfx1100 (RDNA3, wave32) and gfx942 (CDNA3, wave64). gfx1030 (RDNA2, the rigs' RX 6600) is reported, not
asserted: the Triton in use may refuse it, which is what pipeline.prng.kernels.gpu.usable's probe is for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from pipeline.prng.kernels.gpu import mapped as tm, mt_words as tmt, sieve as tsv, stream as ts

OUT = {"out_ptr": "*i64", "count_ptr": "*i32", "start": "i64", "magic": "i64"}
JOBS = []  # (name, kernel, argument types (i32 where not named), constexpr values)
for kind in range(5):
    for by_array in (0, 1):
        JOBS.append((f"mt_walk/{kind}/{by_array}", tm._mt_walk_kernel,
                     {**OUT, "tbl_ptr": "*i32", "bound": "i64", "param": "i64", "base_ptr": "*i32"},
                     {"KIND": kind, "BY_ARRAY": by_array, "BLOCK": 256}))
for kind in range(3):
    JOBS.append((f"java_walk/{kind}", tm._java_walk_kernel, {**OUT, "tbl_ptr": "*i32", "bound": "i64"},
                 {"KIND": kind, "BLOCK": 256}))
for family in range(5):
    JOBS.append((f"stream/{family}", ts._stream_kernel,
                 {**OUT, "first_ptr": "*i32", "tgt_ptr": "*i32", "c0": "i64", "c1": "i64", "c2": "i64", "c3": "i64"},
                 {"FAMILY": family, "S1": 12, "S2": 25, "S3": 27, "WIDE": family in (2, 3), "ROUNDS": 10,
                  "BLOCK": 256}))
for kind in range(6):
    JOBS.append((f"jump/{kind}", tsv._jump_kernel,
                 {**OUT, "coef_a_ptr": "*i64", "coef_c_ptr": "*i64", "tgt_ptr": "*i32", "pmask": "i64", "pout": "i64"},
                 {"KIND": kind, "BLOCK": 256}))
JOBS.append(("xorshift32", tsv._xorshift_kernel, {**OUT, "first_ptr": "*i32", "tgt_ptr": "*i32"}, {"BLOCK": 256}))
JOBS.append(("mt", tsv._mt_kernel, {**OUT, "need_ptr": "*i32", "ops_ptr": "*i32", "slot_ptr": "*i32",
                                    "tgt_ptr": "*i32", "scratch_ptr": "*i32"}, {"OUT_SHIFT": 1, "BLOCK": 256}))
JOBS.append(("mt_words", tmt._mt_words_kernel, {"seeds_ptr": "*i32", "out_ptr": "*i32", "slot_of_ptr": "*i32"},
             {"BLOCK": 1024}))
TARGETS = {"sm_90": GPUTarget("cuda", 90, 32), "gfx1100": GPUTarget("hip", "gfx1100", 32),
           "gfx942": GPUTarget("hip", "gfx942", 64)}


def compile_one(fn, types, constexprs, target):
    names = fn.arg_names
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in names}
    src = ASTSource(fn=fn, signature=signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    binary = triton.compile(src, target=target).asm
    return len(binary.get("cubin") or binary.get("hsaco") or b"")


failures, sizes = {}, {}
for tname, target in TARGETS.items():
    for name, fn, types, constexprs in JOBS:
        try:
            sizes[f"{tname}:{name}"] = compile_one(fn, types, constexprs, target)
        except Exception as exc:
            failures[f"{tname}:{name}"] = f"{type(exc).__name__}: {str(exc)[-600:]}"
try:
    compile_one(tsv._mt_kernel, JOBS[-2][2], JOBS[-2][3], GPUTarget("hip", "gfx1030", 32))
    rdna2 = "compiles"
except Exception as exc:
    rdna2 = (str(exc).strip().splitlines() or [""])[0][:200]
print(json.dumps({"jobs": len(JOBS), "failures": failures, "sizes": sizes, "rdna2": rdna2}))
"""

PROBE = r"""
import json
from pipeline.prng.kernels.gpu import triton_usable
from pipeline.prng.kernels.gpu.probe import probe
from pipeline.prng.sieve.dispatch import choose_path
print(json.dumps({"probe": probe("cpu"), "usable": triton_usable("cpu"), "auto": choose_path("auto", "cpu:0"),
                  "gpu_auto": choose_path("auto", "cuda:7")}))
"""


@pytest.mark.slow
def test_every_kernel_compiles_for_gpu_targets(tmp_path: Path) -> None:
    env = {**os.environ, "TRITON_CACHE_DIR": str(tmp_path / "cache")}  # a real compile, not a cache hit
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}
    assert len(result["sizes"]) == 3 * result["jobs"] == 3 * 27
    assert all(size > 1000 for size in result["sizes"].values()), result["sizes"]  # a real binary each
    print(f"gfx1030 (RDNA2): {result['rdna2']}")


def test_the_probe_tells_a_device_that_cannot_run_triton() -> None:
    """Compiled Triton has no cpu driver: the probe says so in one line and the device is not offered the Triton
    path; under the interpreter the same probe runs and passes (so its check of the written values is live)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    runs = {}
    for mode, extra in (("compiled", {}), ("interpreted", {"TRITON_INTERPRET": "1"})):
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO,
                              env={**env, **extra}, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[mode] = (json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr)
    compiled, stderr = runs["compiled"]
    assert compiled["probe"] and "driver" in compiled["probe"] and "\n" not in compiled["probe"]
    assert compiled["usable"] is False and compiled["auto"] == "fast"  # cpu keeps numba
    assert compiled["gpu_auto"] == "fallback"
    assert "Triton cannot run on cpu" in stderr and "portable torch path" in stderr
    interpreted, _ = runs["interpreted"]
    assert interpreted["probe"] is None and interpreted["usable"] is True
