"""The launch layer (pipeline.prng.kernels.gpu.launch) and the worker's GPU runtime order, without a GPU.

CuPy needs a GPU, so it is the one thing stood in for here: `fake_cupy` has CuPy's few calls the launch layer makes
(RawModule, Device, asarray / empty / zeros / asnumpy, DLPack), with numpy arrays as device memory and
RawModule compiling the real kernel source through the CPU shim. The launch code itself runs unchanged: the probe,
the module cache per device and source hash, the compile lock, a plan's launches and the mt_words hook.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kernel_checks import check_family, check_walk
from kernel_shim import build, compiler
from loguru import logger

from pipeline import worker
from pipeline.prng.kernels.gpu import launch
from pipeline.prng.sieve import SieveSpec, variable_rows
from pipeline.prng.sieve.dispatch import choose_path
from pipeline.prng.sieve.variable import reference_variable_rows

REPO = Path(__file__).resolve().parents[2]


class FakeKernel:
    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.fn = getattr(lib, name)
        self.fn.restype = None
        self.lib = lib

    def __call__(self, grid: tuple[int], block: tuple[int], args: tuple[Any, ...]) -> None:
        def c(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return ctypes.c_void_p(v.ctypes.data)
            return ctypes.c_uint64(int(v)) if v.dtype == np.uint64 else ctypes.c_uint32(int(v))

        assert grid[0] >= 1 and block[0] >= 1
        self.lib.shim_index(0, 0, 1, 1)  # one shim thread: the kernels' grid-stride loops cover every seed
        self.fn(*map(c, args))


def fake_cupy(where: Path) -> types.ModuleType:
    """A `cupy` module on the CPU shim; `compiles` counts RawModule compiles, `devices` the devices entered."""
    cp: Any = types.ModuleType("cupy")
    cp.uint32, cp.int32, cp.compiles, cp.devices = np.uint32, np.int32, [], []

    class RawModule:
        def __init__(self, code: str) -> None:
            dest = where / f"module{len(cp.compiles)}"
            dest.mkdir()
            self.lib = ctypes.CDLL(str(build(dest, sanitize=False, text=code)))
            self.lib.shim_index.restype = None
            cp.compiles.append(code)

        def get_function(self, name: str) -> FakeKernel:
            return FakeKernel(self.lib, name)

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        def __enter__(self) -> Device:
            cp.devices.append(self.index)
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    cp.RawModule = RawModule
    cp.cuda = types.SimpleNamespace(Device=Device)
    cp.asarray = lambda a: np.array(a, copy=True)
    cp.empty = lambda shape, dtype: np.empty(shape, dtype=dtype)
    cp.zeros = lambda shape, dtype: np.zeros(shape, dtype=dtype)
    cp.asnumpy = lambda a: np.array(a, copy=True)
    cp.from_dlpack = np.from_dlpack
    return cp


pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++ or clang++): apt-get install g++")


@pytest.fixture
def cupy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    cp = fake_cupy(tmp_path)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(launch, "cupy_installed", lambda: True)
    monkeypatch.setattr(launch, "_modules", {})
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path / "cache"))
    launch.kernels_usable.cache_clear()
    yield cp
    launch.kernels_usable.cache_clear()


def test_probe_compiles_once_per_device_and_the_backend_runs_plans(cupy: Any, tmp_path: Path) -> None:
    assert launch.probe("cuda") is None and launch.kernels_usable("cuda:0")
    assert launch.module(0) is launch.module(0) and len(cupy.compiles) == 1  # cached per device and source hash
    launch.module(1)
    assert len(cupy.compiles) == 2 and set(cupy.devices) == {0, 1}
    assert (tmp_path / "cache" / f"watcher-{launch.source_hash()}.lock").exists()  # the node-wide compile lock
    be = launch.CupyBackend("cuda:1")
    spec = SieveSpec("mt19937", (3, 1, 4), 0.6, modulus=5, offset=5, skip_max=1)
    assert check_family(be, spec, range(2**32 - 300, 2**32))[:2] == (True, True)  # scored with mt_words (DLPack)
    walk = SieveSpec("java_lcg", (1, 2, 3, 4), 0.5, modulus=7, mapping="java_next_int")
    assert check_walk(be, walk, range(0, 300))[:2] == (True, True)  # type: ignore[index]


def test_variable_rows_on_a_gpu_take_the_c_kernel(cupy: Any) -> None:
    """pipeline.prng.sieve.variable_rows on a (stand-in) GPU: the C kernel's rows, i23's contract row for row."""
    spec = SieveSpec("prng_cluster.mt19937", (7, 1, 4, 4, 2), 0.6, modulus=9, offset=2, offset_max=6,
                     skip_mode="variable")  # fmt: skip
    got = variable_rows(spec, 1000, 1100, device="cuda:0", path="auto")
    assert got.path == "fast" and got.rows() == reference_variable_rows(spec, range(1000, 1100))
    assert len(got) > 0


def test_a_probe_that_writes_wrong_values_sends_the_device_to_torch(cupy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = launch.source().replace("out[i] = mt_temper(value + i) * 3u;", "out[i] = mt_temper(value + i) * 5u;")
    monkeypatch.setattr(launch, "source", lambda: wrong)
    monkeypatch.setattr(launch, "source_hash", lambda: "mutated")
    assert launch.probe("cuda") == "the probe kernel wrote wrong values"
    assert choose_path("auto", "cuda:0") == "fallback"


def test_without_cupy_a_gpu_takes_the_torch_path_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "cupy_installed", lambda: False)
    launch.kernels_usable.cache_clear()
    said: list[str] = []
    sink = logger.add(lambda m: said.append(str(m)), level="WARNING")
    try:
        assert choose_path("auto", "cuda:3") == "fallback" and choose_path("auto", "cuda:3") == "fallback"
        assert choose_path("auto", "cpu") in ("fast", "fallback")  # cpu never asks
    finally:
        logger.remove(sink)
        launch.kernels_usable.cache_clear()
    assert len(said) == 1 and "CuPy is not installed" in said[0] and "rig-watcher[cuda]" in said[0]
    assert "portable torch path" in said[0]


def test_the_compile_lock_makes_a_second_compiler_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))
    order: list[str] = []

    def second() -> None:
        with launch.node_lock("x"):
            order.append("b")

    with launch.node_lock("x"):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        order.append("a")
    waiter.join(10)
    assert order == ["a", "b"]


FAKE_CUPY = """import json, os, sys
with open(os.environ["FAKE_CUPY_LOG"], "a") as fh:
    fh.write(json.dumps({"torch_loaded": "torch" in sys.modules}) + "\\n")
"""


@pytest.mark.parametrize("kind", ["rocm", "cpu"])
def test_a_rocm_worker_imports_cupy_before_torch(tmp_path: Path, kind: str) -> None:
    """The worker on a (fake) ROCm node: CuPy (a stand-in that records what was loaded before it) comes before the
    job imports torch; a cpu slot does not load it at all."""
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text(FAKE_CUPY)
    log = tmp_path / "cupy.log"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "FAKE_CUPY_LOG": str(log), "WATCHER_GPU_KIND": kind}
    job = {"kind": "sieve", "spec": {"generator": "lcg32", "residues": [1, 2], "threshold": 0.5}, "start": 0,
           "end": 1000, "device": "cpu", "path": "fallback"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "pipeline.worker", "pipeline.prng.jobs"], input=json.dumps(job),
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"], proc.stderr[-2000:]
    assert json.loads(proc.stdout)["torch_version"] != "unavailable"
    if kind == "rocm":
        assert log.read_text().splitlines() == ['{"torch_loaded": false}']
    else:
        assert not log.exists()


def test_a_failing_prepare_hook_is_logged_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    (tmp_path / "jobs_with_prepare.py").write_text("def prepare():\n    raise OSError('no device')\nJOBS = {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    worker.prepare(["jobs_with_prepare"])
    assert "prepare() failed: OSError: no device" in capsys.readouterr().err
