"""The C kernels on a GPU through CuPy (NVRTC on CUDA, hipRTC on ROCm): compile once, probe, launch plans.

Thin on purpose: what decides a result is in the plans and the kernel source, which the tests run on the CPU shim;
this layer only compiles, moves arrays and launches. Kept free of a top-level cupy import: hosts without CuPy ask
whether the kernels can run too (they cannot, and the sieve takes the torch path with one warning).

Compiled modules are kept per device and per source hash in the process. On disk CuPy caches what it compiled
(per source, options and architecture), and a file lock next to that cache makes the 12 workers of a rig that start
together compile once: the first holds the lock while it compiles, the others then load its result.

On ROCm CuPy must be imported before torch (importing torch first breaks CuPy's compilation there), which
pipeline.worker does before any job runs; a probe that fails after torch came first says so.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

from pipeline.prng.kernels.gpu.plan import Launch, Plan, word_slots
from pipeline.prng.kernels.gpu.source import source, source_hash

BLOCK = 256
PROBE_VALUE = 0x5EED
PROBE_LANES = 64
INSTALL_HINT = "pip install 'rig-watcher[cuda]' on CUDA; on ROCm the CuPy build of the rig's ROCm (README)"
_modules: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def cupy_installed() -> bool:
    return importlib.util.find_spec("cupy") is not None


def device_index(device: str) -> int:
    """The CuPy device of a torch device string ("cuda" is the first visible GPU, "cuda:N" the Nth)."""
    _, _, index = device.partition(":")
    return int(index) if index else 0


def cache_dir() -> Path:
    return Path(os.environ.get("CUPY_CACHE_DIR") or Path.home() / ".cupy" / "kernel_cache")


@contextlib.contextmanager
def node_lock(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process of this machine (flock on a file in CuPy's cache directory)."""
    import fcntl

    path = cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    with open(path / f"watcher-{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def module(index: int) -> Any:
    """The compiled kernel source on device `index` (cupy.RawModule), compiled at most once per machine at a time."""
    import cupy

    key = (index, source_hash())
    with _lock:
        if key not in _modules:
            with cupy.cuda.Device(index), node_lock(source_hash()):
                mod = cupy.RawModule(code=source())
                mod.get_function("probe")  # compiles (or loads CuPy's cache) now, under the lock
            _modules[key] = mod
        return _modules[key]


def probe_expected(value: int = PROBE_VALUE, lanes: int = PROBE_LANES) -> list[int]:
    def temper(y: int) -> int:
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return (y ^ (y >> 18)) & 0xFFFFFFFF

    return [(temper((value + i) & 0xFFFFFFFF) * 3) & 0xFFFFFFFF for i in range(lanes)]


def probe(device: str) -> str | None:
    """None when the whole source compiled on `device` and the probe kernel wrote what it should; otherwise a
    one-line reason with its fix."""
    if not cupy_installed():
        return f"CuPy is not installed (fix: {INSTALL_HINT})"
    torch_first = "torch" in sys.modules and "cupy" not in sys.modules
    try:
        import cupy

        index = device_index(device)
        fn = module(index).get_function("probe")
        with cupy.cuda.Device(index):
            out = cupy.zeros(PROBE_LANES, dtype=cupy.uint32)
            fn((1,), (PROBE_LANES,), (np.uint32(PROBE_VALUE), out, np.uint32(PROBE_LANES)))
            got = cupy.asnumpy(out).tolist()
    except Exception as exc:  # any import, compile, driver or launch failure: the device cannot run the kernels
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        hint = " (torch was imported before CuPy: on ROCm CuPy must come first)" if torch_first else ""
        return f"{type(exc).__name__}: {first}{hint}"
    return None if got == probe_expected() else "the probe kernel wrote wrong values"


@functools.cache
def kernels_usable(device: str) -> bool:
    """CuPy imports, the source compiles and the probe runs on `device` (a torch device string); asked once per
    process and device, with one warning naming the reason when the answer is no."""
    problem = probe(device)
    if problem is not None:
        logger.warning(f"the C kernels cannot run on {device} ({problem}); the sieve takes the portable torch path")
        return False
    return True


class CupyBackend:
    """pipeline.prng.kernels.gpu.plan.Backend on a GPU: a plan's tables copied once, then one launch a chunk."""

    def __init__(self, device: str) -> None:
        self.index = device_index(device)

    def load(self, plan: Plan) -> Launch:
        import cupy

        fn = module(self.index).get_function(plan.kernel)
        with cupy.cuda.Device(self.index):
            args = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in plan.args]

        def launch(start: int, n: int, cap: int) -> tuple[np.ndarray, int]:
            with cupy.cuda.Device(self.index):
                out = cupy.empty(cap * plan.row_words, dtype=cupy.uint32)
                count = cupy.zeros(1, dtype=cupy.uint32)
                scratch = [cupy.empty(plan.scratch_words * n, dtype=cupy.uint32)] if plan.scratch_words else []
                grid = (n + BLOCK - 1) // BLOCK
                fn((grid,), (BLOCK,), (np.uint64(start), np.uint32(n), *args, *scratch, out, count, np.uint32(cap)))
                got = int(cupy.asnumpy(count)[0])
                rows = cupy.asnumpy(out[: min(got, cap) * plan.row_words]).reshape(-1, plan.row_words)
            return rows, got

        return launch

    def mt_words(self, seeds32: Any, indices: Sequence[int]) -> dict[int, Any]:
        """torch_gen's MtWords from the mt_words kernel: seeds and words stay on the device (DLPack both ways)."""
        import cupy
        import torch

        wanted, slot_of = word_slots(indices)
        n = int(seeds32.numel())
        fn = module(self.index).get_function("mt_words")
        with cupy.cuda.Device(self.index):
            out = cupy.empty((len(wanted), n), dtype=cupy.int32)
            if n:
                seeds = cupy.from_dlpack(seeds32.contiguous())
                grid = (n + BLOCK - 1) // BLOCK
                fn((grid,), (BLOCK,), (seeds, np.uint32(n), cupy.asarray(slot_of), np.uint32(wanted[-1]), out))
            words = torch.from_dlpack(out)
        return {w: words[k] for k, w in enumerate(wanted)}
