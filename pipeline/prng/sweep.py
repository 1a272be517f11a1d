"""Step 1's sampled sweep of the seed range: which blocks a study has covered, which block comes next,
and how much of a budget the rest of the range can use. Pure functions over [start, end) intervals.

A study sweeps the range in passes. Within a pass a block is handed out only if no trial that ran to the
end has covered it, lowest seeds first, so a block whose trial failed or was killed is simply handed
out again. When a pass has covered the whole range the next pass starts. A budget larger than what is
left of the pass is cut, so a step never sieves a seed twice in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

Interval = tuple[int, int]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping, non-empty intervals covering the same seeds."""
    out: list[Interval] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def covered_length(intervals: Iterable[Interval], lo: int, hi: int) -> int:
    return sum(min(e, hi) - max(s, lo) for s, e in merge(intervals) if min(e, hi) > max(s, lo))


def gaps(intervals: Iterable[Interval], lo: int, hi: int) -> list[Interval]:
    """The parts of [lo, hi) no interval covers, lowest first."""
    out, cursor = [], lo
    for start, end in merge(intervals):
        if end <= cursor or start >= hi:
            continue
        if start > cursor:
            out.append((cursor, min(start, hi)))
        cursor = max(cursor, end)
    if cursor < hi:
        out.append((cursor, hi))
    return out


@dataclass
class Sweep:
    """The sweep of one study over [lo, hi): the current pass and what of it is covered."""

    lo: int
    hi: int
    pass_number: int
    covered: list[Interval]

    @classmethod
    def resume(cls, lo: int, hi: int, blocks: Iterable[tuple[int, Interval]], *, advance: bool = True) -> Sweep:
        """From the blocks of the study's finished trials, as (pass, interval): the latest pass, or (advance)
        the next one when the latest is complete, which is where new blocks come from."""
        by_pass: dict[int, list[Interval]] = {}
        for number, interval in blocks:
            by_pass.setdefault(number, []).append(interval)
        current = max(by_pass, default=0)
        sweep = cls(lo, hi, current, merge(by_pass.get(current, [])))
        if advance and sweep.remaining == 0:
            sweep = cls(lo, hi, current + 1, [])
        return sweep

    @property
    def span(self) -> int:
        return self.hi - self.lo

    @property
    def remaining(self) -> int:
        return self.span - covered_length(self.covered, self.lo, self.hi)

    @property
    def coverage(self) -> float:
        """Fraction of the range the current pass has covered."""
        return 1.0 - self.remaining / self.span

    def cap(self, trials: int, max_seeds: int) -> int:
        """max_seeds cut so that `trials` blocks cover no more than what is left of this pass."""
        left = self.remaining
        if trials * max_seeds <= left:
            return max_seeds
        return max(1, math.ceil(left / max(1, trials)))

    def take(self, size: int) -> tuple[int, Interval]:
        """The next block of at most `size` seeds (lowest uncovered first), marked covered now so a batch
        gets distinct blocks; a finished pass opens the next one. Returns (pass, block)."""
        free = gaps(self.covered, self.lo, self.hi)
        if not free:
            self.pass_number, self.covered = self.pass_number + 1, []
            free = [(self.lo, self.hi)]
        start, end = free[0]
        block = (start, min(end, start + max(1, size)))
        self.covered = merge([*self.covered, block])
        return self.pass_number, block
