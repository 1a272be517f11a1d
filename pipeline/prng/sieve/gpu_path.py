"""The GPU path ("fast" on a GPU): the C kernels (pipeline.prng.kernels.gpu) find the candidates, torch scores them
on the same device.

Survivors are few, so scoring stays where it always was: the whole-window torch scoring of each kind of spec
(pipeline.prng.sieve.torch_path.score_torch, pipeline.prng.mappings.torch_path.score, and for variable skips
score_variable_torch, which also gives each survivor's skip sequence). `backend` is where the kernels run: CuPy on
the device by default, the CPU shim in the tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pipeline.prng.kernels.gpu.filters import filter_plan
from pipeline.prng.kernels.gpu.plan import Backend, Plan, collect
from pipeline.prng.kernels.gpu.variable_plan import variable_plan, variable_rows
from pipeline.prng.kernels.gpu.walks import JAVA_MAPPINGS, java_plan, mt_fits, mt_plan
from pipeline.prng.mappings import library as lib
from pipeline.prng.sieve.spec import SieveSpec

SCORE_BATCH = 1 << 20  # candidates scored per torch call
Arrays = tuple[np.ndarray, ...]


def default_backend(device: str) -> Backend:
    from pipeline.prng.kernels.gpu.launch import CupyBackend

    return CupyBackend(device)


Scorer = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def _score(cands: np.ndarray, device: str, score: Scorer, width: int, batch: int = SCORE_BATCH) -> Arrays:
    parts = []
    for lo in range(0, cands.size, batch):
        found = score(torch.from_numpy(cands[lo : lo + batch]).to(device))
        if found[0].numel():
            parts.append([t.cpu().numpy().astype(np.int64) for t in found])
    if not parts:
        return tuple(np.empty(0, dtype=np.int64) for _ in range(width))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(width))


def _candidates(backend: Backend, plan: Plan, start: int, end: int) -> np.ndarray:
    return np.unique(collect(backend, plan, start, end)[:, 0].astype(np.int64))


def kernel_sieve(spec: SieveSpec, start: int, end: int, device: str, backend: Backend | None = None) -> Arrays:
    """(seeds, skips, matches) of the fixed-skip survivors among [start, end)."""
    from pipeline.prng.sieve.torch_path import score_torch

    backend = backend or default_backend(device)
    cands = _candidates(backend, filter_plan(spec), start, end)
    return _score(cands, device, lambda seeds: score_torch(spec, seeds, backend.mt_words), 3)


def walk_plan(spec: SieveSpec) -> Plan | None:
    """The walk of this spec's library calls (java.util.Random's, or MT19937's within the 227 outputs its cursors
    reach), or None: those run on the torch path."""
    from pipeline.prng.mappings.torch_path import BY_ARRAY_BASE, buffer_length

    def steps(calls: int) -> int:
        return buffer_length(spec.mapping, spec.modulus, calls)

    if spec.mapping in JAVA_MAPPINGS:
        return java_plan(spec, steps)
    if spec.generator not in lib.MT_GENERATORS + lib.PYTHON_GENERATORS or not mt_fits(spec, steps):
        return None
    base = BY_ARRAY_BASE if spec.generator in lib.PYTHON_GENERATORS else None
    return mt_plan(spec, steps, lib.walk_param(spec.mapping, spec.modulus), base)


def kernel_mapped(spec: SieveSpec, plan: Plan, seeds: range, device: str, backend: Backend | None = None) -> Arrays:
    """(seeds, skips, matches) of the mapped survivors among `seeds`: the walk's candidates (any call of a filter
    draw matching, or a seed that ran out of steps), scored on the whole window."""
    from pipeline.prng.mappings.torch_path import score

    backend = backend or default_backend(device)
    cands = _candidates(backend, plan, seeds.start, seeds.stop)
    return _score(cands, device, lambda s: score(spec, s, backend.mt_words), 3)


def _rows_plan(spec: SieveSpec, offsets: list[int]) -> Plan:
    from pipeline.prng.sieve.variable import rule_for

    return variable_plan(spec.generator, spec.modulus, spec.residues[: spec.scan_length], offsets, spec.strategies,
                         rule_for(spec.generator), spec.need)  # fmt: skip


def kernel_rows(spec: SieveSpec, seeds: range, device: str, backend: Backend | None = None) -> Arrays:
    """(seeds, offsets, strategies, matches): every (offset, strategy) of spec.offsets x spec.strategies reaching
    spec.need, the block contract of pipeline.prng.sieve.variable.reference_variable_rows, in no order."""
    rows = variable_rows(backend or default_backend(device), _rows_plan(spec, list(spec.offsets)), seeds.start,
                         seeds.stop)  # fmt: skip
    return tuple(np.ascontiguousarray(rows[:, i]) for i in range(4))


def kernel_variable(spec: SieveSpec, seeds: range, device: str, backend: Backend | None = None) -> Arrays:
    """(seeds, strategies, matches, skip sequences) of the variable-skip survivors among `seeds`: a seed survives
    when some strategy reaches `need`, which is what the kernel's rows say; its best strategy and skips come from
    the torch scan of those few seeds."""
    from pipeline.prng.sieve.torch_path import VARIABLE_CHUNK, score_variable_torch

    backend = backend or default_backend(device)
    rows = variable_rows(backend, _rows_plan(spec, [spec.offset]), seeds.start, seeds.stop)
    scan = lambda s: score_variable_torch(spec, s, backend.mt_words)  # noqa: E731
    found = _score(np.unique(rows[:, 0]), device, scan, 4, VARIABLE_CHUNK)
    if not found[0].size:
        return (*found[:3], np.empty((0, spec.scan_length), dtype=np.int64))
    return found
