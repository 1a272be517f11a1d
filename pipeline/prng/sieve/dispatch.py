"""Seed sieve: which 32-bit seeds reproduce a window of draws, and at which skip.

Public entry points for the pipeline steps and the worker. Three interchangeable paths give identical survivor
sets: "fast" (the compiled kernels: numba on cpu, the C kernels through CuPy on a GPU, pipeline.prng.sieve.gpu_path),
"fallback" (pure torch, cpu or GPU) and "reference" (plain Python, tests only). "auto" picks fast where its kernels
run (numba imports; CuPy imports and the kernels' probe runs on the GPU), the torch path otherwise. Heavy imports are
deferred so that `python -m pipeline.worker` starts quickly.

A spec whose draws are library calls rather than raw outputs (`spec.mapping` other than mod, or a generator only
the mapped paths implement) goes to pipeline.prng.mappings on the same three paths: its numba walk on cpu, the C walk
of its calls on a GPU, its torch batches (cpu or GPU), its plain-Python oracle.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.prng.generators.reference import GENERATORS, generate
from pipeline.prng.sieve.spec import MAX_SEED, SieveSpec, SieveSpecError, check_range

__all__ = ["GENERATORS", "PATHS", "SieveResult", "SieveSpec", "generate", "sieve_range", "verify_seeds"]

PATHS = ("auto", "fast", "fallback", "reference")
VERIFY_CHUNK = 1 << 16
# verify_seeds on cpu runs the numba range kernels once per run of consecutive seeds (15-25 us a run, the plan built
# once); a list more scattered than this goes to the torch batches instead
MAX_VERIFY_RUNS = 4096


@dataclass
class SieveResult:
    """Survivors as parallel int64 arrays, sorted by seed, plus how they were obtained.

    In variable-skip mode `skips` holds each survivor's strategy index (into spec.strategies) and
    `skip_sequences` [n, scan] its skip per draw (-1 for draws after the scan gave up); None in fixed mode.
    """

    seeds: np.ndarray
    skips: np.ndarray
    matches: np.ndarray
    seeds_tested: int
    seconds: float
    path: str
    device: str
    skip_sequences: np.ndarray | None = None

    @property
    def strategies(self) -> np.ndarray:
        """Variable mode: the strategy index per survivor (the same array as `skips`)."""
        return self.skips

    def __len__(self) -> int:
        return int(self.seeds.size)

    @property
    def seeds_per_s(self) -> float:
        return self.seeds_tested / self.seconds if self.seconds > 0 else 0.0

    def survivors(self) -> list[tuple[int, int, int]]:
        return list(zip(self.seeds.tolist(), self.skips.tolist(), self.matches.tolist(), strict=True))

    def variable_survivors(self) -> list[tuple[int, int, int, list[int]]]:
        """(seed, strategy, matches, skip sequence) per survivor of a variable-skip sieve."""
        if self.skip_sequences is None:
            raise ValueError("variable_survivors() needs a variable-skip result")
        return [(*s, q) for s, q in zip(self.survivors(), self.skip_sequences.tolist(), strict=True)]

    def to_dict(self) -> dict[str, Any]:
        extra = {} if self.skip_sequences is None else {"skip_sequences": self.skip_sequences.tolist()}
        return {
            **extra,
            "survivors": [list(s) for s in self.survivors()],
            "survivor_count": len(self),
            "seeds_tested": self.seeds_tested,
            "seconds": round(self.seconds, 6),
            "seeds_per_s": round(self.seeds_per_s, 1),
            "path": self.path,
            "device": self.device,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/kfd")  # NVIDIA driver, ROCm (amdkfd)


def default_device() -> str:
    """`cuda` when torch sees a GPU, else `cpu`.

    torch takes ~2 s to import and the worker is started once per chunk, so hosts with neither driver's
    device node are answered `cpu` without importing it (torch could not see a GPU there either).
    """
    if not any(os.path.exists(p) for p in GPU_DEVICE_NODES):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_kernels_available(device: str) -> bool:
    """CuPy imports and the C kernels compile and run on `device` (pipeline.prng.kernels.gpu.launch's probe)."""
    from pipeline.prng.kernels.gpu.launch import kernels_usable

    return kernels_usable(device)


def choose_path(path: str, device: str, *, have_numba: bool | None = None, have_kernels: bool | None = None) -> str:
    """Which implementation runs for a requested path on a device.

    "fast" is the compiled kernel of the device: numba on cpu, the C kernels on a GPU (pipeline.prng.kernels.gpu,
    launched through CuPy). A GPU they cannot run on (no CuPy, or its compiler or driver refuses the source) gets
    "fallback" for "auto", with one warning naming the reason, and "fast" is refused.
    """
    if path not in PATHS:
        raise SieveSpecError(f"path={path!r} must be one of {', '.join(PATHS)}")
    on_gpu = not device.startswith("cpu")
    if on_gpu:
        have = gpu_kernels_available(device) if have_kernels is None else have_kernels
        need = "CuPy and the C kernels"
    else:
        have = numba_available() if have_numba is None else have_numba
        need = "numba"
    if path == "auto":
        return "fast" if have else "fallback"
    if path == "fast" and not have:
        raise SieveSpecError(
            f"path='fast' on device={device!r} needs {need}, which is not installed or cannot run there "
            "(see the warning above); use 'fallback'"
        )
    return path


def _sorted(seeds: np.ndarray, skips: np.ndarray, matches: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.argsort(seeds, kind="stable")
    return tuple(np.ascontiguousarray(a[order], dtype=np.int64) for a in (seeds, skips, matches))


def sieve_range(spec: SieveSpec, start: int, end: int, *, device: str | None = None, path: str = "auto") -> SieveResult:
    """Survivors among seeds [start, end), 0 <= start < end <= 2**32."""
    start, end = check_range(start, end)
    device = device or default_device()
    chosen = choose_path(path, device)
    t0 = time.perf_counter()
    if spec.mapped:
        return _mapped(spec, range(start, end), device, chosen, t0)
    if spec.variable:
        return _variable(spec, range(start, end), device, chosen, t0)
    if chosen == "fast" and device.startswith("cpu"):
        from pipeline.prng.sieve.fast import fast_sieve

        arrays = fast_sieve(spec, start, end)
    elif chosen == "fast":  # GPU: the C filter kernel of the spec's family, its candidates scored by torch
        from pipeline.prng.sieve.gpu_path import kernel_sieve

        arrays = kernel_sieve(spec, start, end, device)
    elif chosen == "fallback":
        from pipeline.prng.sieve.torch_path import torch_sieve

        arrays = torch_sieve(spec, start, end, device)
    else:
        from pipeline.prng.sieve.reference import reference_sieve

        found = reference_sieve(spec, range(start, end))
        arrays = tuple(np.array([f[i] for f in found], dtype=np.int64) for i in range(3))
    seeds, skips, matches = _sorted(*arrays)
    return SieveResult(seeds, skips, matches, end - start, time.perf_counter() - t0, chosen, device)


def verify_seeds(
    spec: SieveSpec, seeds: Sequence[int] | np.ndarray, *, device: str | None = None, path: str = "auto"
) -> SieveResult:
    """Score an explicit candidate list (any positions); duplicates are dropped, output sorted by seed. On cpu the
    numba kernels of sieve_range score it run by run (at most MAX_VERIFY_RUNS runs of consecutive seeds; a variable-skip
    spec's block kernel takes the list whole), else the torch batches."""
    arr = np.unique(np.asarray(seeds, dtype=np.int64).ravel())
    if arr.size and (arr[0] < 0 or arr[-1] >= MAX_SEED):
        raise SieveSpecError("seeds must all lie in [0, 2**32)")
    device = device or default_device()
    if path not in PATHS:
        raise SieveSpecError(f"path={path!r} must be one of {', '.join(PATHS)}")
    t0 = time.perf_counter()
    if path in ("auto", "fast") and device.startswith("cpu") and numba_available():
        if spec.variable:  # the block kernel takes a list as it is
            return _variable(spec, arr, "cpu", "fast", t0)
        runs = seed_runs(arr)
        if len(runs) <= MAX_VERIFY_RUNS:
            return _verify_by_runs(spec, runs, int(arr.size), t0)
    if spec.mapped:
        return _mapped(spec, arr, device, "reference" if path == "reference" else "fallback", t0)
    if spec.variable:
        return _variable(spec, arr, device, "reference" if path == "reference" else "fallback", t0)
    if path == "reference":
        from pipeline.prng.sieve.reference import reference_sieve

        found = reference_sieve(spec, arr.tolist())
        arrays = tuple(np.array([f[i] for f in found], dtype=np.int64) for i in range(3))
        used = "reference"
    else:
        import torch

        from pipeline.prng.sieve.torch_path import score_torch

        mt_words = None
        if not device.startswith("cpu") and gpu_kernels_available(device):  # MT init words from the C kernel
            from pipeline.prng.sieve.gpu_path import default_backend

            mt_words = default_backend(device).mt_words
        parts = []
        for lo in range(0, arr.size, VERIFY_CHUNK):
            chunk = torch.from_numpy(arr[lo : lo + VERIFY_CHUNK]).to(device)
            parts.append([t.cpu().numpy().astype(np.int64) for t in score_torch(spec, chunk, mt_words)])
        arrays = tuple(
            np.concatenate([p[i] for p in parts]) if parts else np.empty(0, dtype=np.int64) for i in range(3)
        )
        used = "fallback"
    out = _sorted(*arrays)
    return SieveResult(*out, seeds_tested=int(arr.size), seconds=time.perf_counter() - t0, path=used, device=device)


def seed_runs(seeds: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive seeds in a sorted, duplicate-free array."""
    if not seeds.size:
        return []
    breaks = np.flatnonzero(np.diff(seeds) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [seeds.size]))
    return [(int(seeds[a]), int(seeds[b - 1]) + 1) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def _verify_by_runs(spec: SieveSpec, runs: list[tuple[int, int]], tested: int, t0: float) -> SieveResult:
    """verify_seeds on cpu: the numba kernels of sieve_range over each run of consecutive seeds, so an explicit list
    is scored by the very code that sieved the range (and a worker or coordinator never imports torch, ~2 s, to
    re-check a few survivors). A fixed-skip spec's kernel plan is built once for all the runs."""
    if spec.mapped:
        found = [sieve_range(spec, lo, hi, device="cpu", path="fast") for lo, hi in runs]
        parts = [(f.seeds, f.skips, f.matches) for f in found]
    else:
        from pipeline.prng.sieve.fast import FastPlan, fast_sieve

        plan = FastPlan(spec) if runs else None
        parts = [_sorted(*fast_sieve(spec, lo, hi, plan)) for lo, hi in runs]
    empty = np.empty(0, dtype=np.int64)
    seeds, skips, matches = (np.concatenate([empty, *(p[i] for p in parts)]) for i in range(3))
    return SieveResult(seeds, skips, matches, tested, time.perf_counter() - t0, "fast", "cpu")


def _mapped(spec: SieveSpec, seeds: range | np.ndarray, device: str, chosen: str, t0: float) -> SieveResult:
    """Mapped sieve of `seeds` (a range, or sorted unique seeds): numba for a range on cpu ("fast"), the plain
    Python oracle ("reference"), on a GPU ("fast") the C walk of the library's calls (pipeline.prng.kernels.gpu's
    mapped.cu), torch otherwise (explicit seeds; MT calls past the walk's reach)."""
    from pipeline.prng.sieve import gpu_path

    if chosen == "reference":
        from pipeline.prng.mappings.library import reference_sieve

        found = reference_sieve(spec, seeds)
        arrays = tuple(np.array([f[i] for f in found], dtype=np.int64) for i in range(3))
    elif chosen == "fast" and device.startswith("cpu") and isinstance(seeds, range):
        from pipeline.prng.mappings.numba_path import numba_sieve

        arrays = numba_sieve(spec, seeds.start, seeds.stop)
    elif chosen == "fast" and isinstance(seeds, range) and (walk := gpu_path.walk_plan(spec)) is not None:
        arrays = gpu_path.kernel_mapped(spec, walk, seeds, device)  # GPU: the walk of the calls, then exact scoring
    else:
        from pipeline.prng.mappings.torch_path import torch_sieve

        arrays = torch_sieve(spec, seeds, device)
        chosen = "fallback"
    out = _sorted(*arrays)
    return SieveResult(*out, seeds_tested=len(seeds), seconds=time.perf_counter() - t0, path=chosen, device=device)


def _reference_variable(spec: SieveSpec, seeds: Sequence[int] | range | np.ndarray) -> tuple[np.ndarray, ...]:
    from pipeline.prng.sieve.variable import reference_variable_sieve

    found = reference_variable_sieve(spec, seeds)
    arrays = tuple(np.array([f[i] for f in found], dtype=np.int64) for i in range(3))
    return (*arrays, np.array([f[3] for f in found], dtype=np.int64).reshape(len(found), spec.scan_length))


def _variable(spec: SieveSpec, seeds: range | np.ndarray, device: str, chosen: str, t0: float) -> SieveResult:
    """Variable-skip sieve of `seeds` (a range, or sorted unique seeds) on the chosen path: each seed's best strategy
    at one offset. Every passing (offset, strategy) over several offsets is pipeline.prng.sieve.rows' job."""
    if spec.offset_max is not None:
        raise SieveSpecError("spec.offset_max: this sieve scores one offset; use pipeline.prng.sieve.variable_rows")
    if chosen == "fast" and device.startswith("cpu"):
        # numba's block kernel says which seeds pass (some strategy reaches need: its rows); the reference scan of
        # those few gives each its best strategy and skip sequence, as the torch scan does after the C kernel
        from pipeline.prng.sieve.rows_plan import RowsPlan

        plan = RowsPlan(spec)
        rows = plan.range(seeds.start, seeds.stop) if isinstance(seeds, range) else plan.explicit(seeds)
        arrays = _reference_variable(spec, np.unique(rows[0]).tolist())
    elif chosen == "fast" and isinstance(seeds, range):  # GPU: the C kernel's passing seeds, rescanned by torch
        from pipeline.prng.sieve.gpu_path import kernel_variable

        arrays = kernel_variable(spec, seeds, device)
    elif chosen == "reference":
        arrays = _reference_variable(spec, seeds)
    else:  # torch, cpu or GPU
        from pipeline.prng.sieve.torch_path import torch_variable_sieve

        arrays = torch_variable_sieve(spec, seeds, device)
    order = np.argsort(arrays[0], kind="stable")
    seeds_out, strategies, matches, sequences = (np.ascontiguousarray(a[order], dtype=np.int64) for a in arrays)
    return SieveResult(seeds_out, strategies, matches, len(seeds), time.perf_counter() - t0, chosen, device, sequences)
