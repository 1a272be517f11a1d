"""What a kernel launch needs, independent of where it runs: the plan of one spec and the loop that collects rows.

Every kernel of the source takes `(u64 start, u32 n, <tables and scalars>, [u32* scratch], u32* out, u32* count,
u32 cap)`. A `Plan` holds the kernel's name and the middle part as numpy arrays (tables) and numpy scalars (their
exact C types), so the same plan is launched by CuPy on a GPU (pipeline.prng.kernels.gpu.launch) and by the tests'
CPU shim (tests/pipeline/cpu_shim.py). Everything that decides a result lives in the plans and the kernels; the
launch layer only moves arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Arg = np.ndarray | np.generic
CHUNK = 1 << 26  # seeds per launch: candidates are about 1/modulus of them per filter draw
SCRATCH_BYTES = 1 << 30  # scratch a launch may take (sieve_mt_program: 4 bytes a word, words a seed)


@dataclass(frozen=True, eq=False)
class Plan:
    """kernel: its extern "C" name; args: what goes between (start, n) and the outputs; scratch_words: u32 words a
    seed of the scratch table the kernel takes before `out` (0: none); row_words: u32 words of one output row;
    launch_seeds: seeds a launch covers at most."""

    kernel: str
    args: tuple[Arg, ...]
    scratch_words: int = 0
    row_words: int = 1
    launch_seeds: int = CHUNK

    def chunk(self) -> int:
        if not self.scratch_words:
            return self.launch_seeds
        return max(1 << 12, min(self.launch_seeds, SCRATCH_BYTES // (4 * self.scratch_words)))


# one launch over seeds [start, start + n) with room for `cap` rows: (the rows written, [min(count, cap),
# row_words] u32, and how many rows the kernel counted)
Launch = Callable[[int, int, int], tuple[np.ndarray, int]]


class Backend(Protocol):
    """Where plans run: `load` puts a plan's tables where its kernel reads them and returns its launcher;
    `mt_words` is pipeline.prng.generators.torch_gen's MtWords hook (the init words of MT19937 seeds, int32 tensors
    on the seeds' device) from the mt_words kernel, for the torch scoring of candidates."""

    def load(self, plan: Plan) -> Launch: ...

    def mt_words(self, seeds32: Any, indices: Sequence[int]) -> dict[int, Any]: ...


def default_cap(n: int) -> int:
    return max(1024, n // 64)


def collect(backend: Backend, plan: Plan, start: int, end: int, cap: int | None = None) -> np.ndarray:
    """Every row the plan's kernel writes for seeds [start, end), [rows, row_words] u32, launched a chunk at a time;
    a chunk with more rows than room (dense survivors: tiny modulus, low threshold) runs again with room for all."""
    launch = backend.load(plan)
    parts = []
    step = plan.chunk()
    for lo in range(start, end, step):
        n = min(step, end - lo)
        room = cap or default_cap(n)
        rows, count = launch(lo, n, room)
        if count > room:
            rows, count = launch(lo, n, count)
        parts.append(rows[:count])
    if not parts:
        return np.empty((0, plan.row_words), dtype=np.uint32)
    return np.concatenate(parts)


def u32(v: int) -> np.uint32:
    return np.uint32(v)


def u64(v: int) -> np.uint64:
    return np.uint64(v)


def table(values: list[int] | tuple[int, ...], dtype: str = "uint32") -> np.ndarray:
    """A kernel table (never empty: a zero-length device array has no address)."""
    return np.ascontiguousarray(np.array(list(values) or [0], dtype=dtype))


NO_SLOT = 0xFFFFFFFF


def word_slots(indices: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """(the distinct word indices, sorted; slot_of[j]: row of word j in the mt_words kernel's output, NO_SLOT for
    the words it only passes through)."""
    wanted = sorted(set(indices))
    slot_of = np.full(wanted[-1] + 1, NO_SLOT, dtype=np.uint32)
    slot_of[wanted] = np.arange(len(wanted), dtype=np.uint32)
    return wanted, slot_of
