"""The variable-skip block contract (pipeline.prng.sieve.variable.reference_variable_rows): every passing
(offset, strategy) of every seed over offset..offset_max, one row each, and the early exit that changes none of
them. Every block kernel (numba here, the GPU kernel of issue 22) is checked against this oracle."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.prng.generators.reference import GENERATORS, REFERENCE
from pipeline.prng.sieve import SieveSpec, SieveSpecError, sieve_range, variable_rows, variable_rows_of
from pipeline.prng.sieve.spec import PRNG_CLUSTER_STRATEGIES
from pipeline.prng.sieve.variable import (
    _Residues,
    reference_variable_rows,
    reference_variable_score,
    rule_for,
    scan_strategy,
)

TOP = 1 << 32


def plant(generator: str, seed: int, skips: list[int], modulus: int = 1000) -> tuple[int, ...]:
    """Draw j is the output after skips[j] more are discarded (the first skip includes the offset)."""
    it = REFERENCE[generator](seed)
    out = []
    for s in skips:
        for _ in range(s):
            next(it)
        out.append(next(it) % modulus)
    return tuple(out)


def brute_rows(spec: SieveSpec, seeds: range) -> list[tuple[int, int, int, int]]:
    """The same rows from the one-offset, one-strategy oracle with no early exit: (offset, strategy) passes when
    its scan alone reaches spec.need."""
    rows = []
    for seed in seeds:
        for offset in spec.offsets:
            for index, strategy in enumerate(spec.strategies):
                one = SieveSpec(**{**spec.to_dict(), "offset": offset, "offset_max": None, "strategies": [strategy]})
                hit = reference_variable_score(one, seed)
                if hit is not None:
                    rows.append((seed, offset, index, hit[1]))
    return rows


def test_a_wandering_history_keeps_every_strategy_that_passes() -> None:
    # skips 7, 5, then a jump to 20: tolerance 5 and 10 cannot follow the jump, 20 and 50 can, from every offset
    # 0..3 (the first skip, 7 from offset 0, is 7 - offset from the others)
    residues = plant("prng_cluster.lcg32", 99, [7, 5, 20, 20, 20, 20])
    spec = SieveSpec("prng_cluster.lcg32", residues, 1.0, skip_mode="variable", offset=0, offset_max=3)
    expected = [(99, o, s, 6) for o in range(4) for s in (1, 4)]
    assert reference_variable_rows(spec, [98, 99, 100]) == expected
    assert brute_rows(spec, range(98, 101)) == expected


def test_the_early_exit_stops_only_scans_that_cannot_pass() -> None:
    residues = plant("prng_cluster.lcg32", 99, [7, 5, 20, 20, 20, 20])
    stream = _Residues("prng_cluster.lcg32", 99, 1000)
    rule = rule_for("prng_cluster.lcg32")
    # tolerance 5 loses the stream at the jump: 2 matches, then misses until 3 in a row give up; with need 6 the
    # first miss ends it, with need 5 the second (2 matches + 2 draws left), with need 3 the give-up rule does
    assert scan_strategy(stream, residues, 0, 3, 5, rule) == (2, [7, 5, 5, 5, 5, -1])
    assert scan_strategy(stream, residues, 0, 3, 5, rule, need=6) == (2, [7, 5, 5, -1, -1, -1])
    assert scan_strategy(stream, residues, 0, 3, 5, rule, need=5) == (2, [7, 5, 5, 5, -1, -1])
    assert scan_strategy(stream, residues, 0, 3, 5, rule, need=3) == (2, [7, 5, 5, 5, 5, -1])
    assert scan_strategy(stream, residues, 0, 3, 5, rule, need=7) == (0, [-1] * 6)  # beyond the window: no scan
    # a passing scan is the same with or without the exit
    full = scan_strategy(stream, residues, 0, 10, 20, rule)
    assert full == (6, [7, 5, 20, 20, 20, 20])
    assert scan_strategy(stream, residues, 0, 10, 20, rule, need=6) == full


@st.composite
def blocks(draw: st.DrawFn) -> tuple[SieveSpec, range]:
    generator = draw(st.sampled_from(GENERATORS))
    n = draw(st.sampled_from([1, 6, 24]))
    start = draw(st.sampled_from([0, TOP - n, draw(st.integers(0, TOP - n))]))
    seed = start + draw(st.integers(0, n - 1))
    modulus = draw(st.sampled_from([10, 100, 1000]))
    offset = draw(st.integers(0, 5))
    walk = draw(st.lists(st.integers(0, 14), min_size=1, max_size=10))
    residues = list(plant(generator, seed, [offset + 3 + walk[0], *walk[1:]], modulus))
    if draw(st.booleans()):
        residues[draw(st.integers(0, len(residues) - 1))] = draw(st.integers(0, modulus - 1))
    strategies = draw(
        st.lists(st.sampled_from((*PRNG_CLUSTER_STRATEGIES, (1, 0), (2, 3))), min_size=1, max_size=5, unique=True)
    )
    spec = SieveSpec(generator, tuple(residues), draw(st.sampled_from([0.3, 0.6, 1.0])), modulus=modulus,
                     offset=offset, offset_max=offset + draw(st.integers(0, 6)), skip_mode="variable",
                     strategies=tuple(strategies))  # fmt: skip
    return spec, range(start, start + n)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks())
def test_rows_are_every_passing_offset_and_strategy(case: tuple[SieveSpec, range]) -> None:
    spec, seeds = case
    expected = reference_variable_rows(spec, seeds)
    assert expected == brute_rows(spec, seeds)
    assert variable_rows(spec, seeds.start, seeds.stop, device="cpu", path="fast").rows() == expected
    assert variable_rows(spec, seeds.start, seeds.stop, device="cpu", path="fallback").rows() == expected
    assert variable_rows_of(spec, list(seeds)[::-1]).rows() == expected


def test_dense_rows_overflow_a_kernel_task_and_are_all_kept() -> None:
    """Modulus 10 at a low threshold: most seeds pass at many pairs, far beyond a task's row slots."""
    residues = plant("prng_cluster.xorshift32", 5000, [9, 5, 6, 12, 20, 21, 19, 8, 7, 7], 10)
    spec = SieveSpec("prng_cluster.xorshift32", residues, 0.3, modulus=10, skip_mode="variable", offset=1,
                     offset_max=6)  # fmt: skip
    got = variable_rows(spec, 4000, 12000, device="cpu", path="fast")
    assert len(got) > 64 * 8000 / 7168 * 4 and got.rows() == reference_variable_rows(spec, range(4000, 12000))


def test_the_one_offset_sieve_refuses_a_multi_offset_spec() -> None:
    spec = SieveSpec("prng_cluster.lcg32", (1, 2, 3), 1.0, skip_mode="variable", offset=0, offset_max=2)
    with pytest.raises(SieveSpecError, match=re.escape("spec.offset_max: this sieve scores one offset")):
        sieve_range(spec, 0, 10, device="cpu")
    with pytest.raises(SieveSpecError, match=re.escape("spec.skip_mode must be 'variable'")):
        variable_rows(SieveSpec("lcg32", (1, 2), 1.0), 0, 10, device="cpu")


def test_offset_max_is_variable_only_and_bounded() -> None:
    base = {"generator": "prng_cluster.lcg32", "residues": [1, 2], "threshold": 1.0}
    with pytest.raises(SieveSpecError, match=re.escape("spec.offset_max is only meaningful")):
        SieveSpec.from_dict({**base, "offset_max": 3})
    for bad in (1, 4096 + 2):
        with pytest.raises(SieveSpecError, match=re.escape(f"spec.offset_max={bad} must lie in")):
            SieveSpec.from_dict({**base, "skip_mode": "variable", "offset": 2, "offset_max": bad})
    spec = SieveSpec.from_dict({**base, "skip_mode": "variable", "offset": 2, "offset_max": 5})
    assert spec.offsets == range(2, 6) and SieveSpec.from_dict(spec.to_dict()) == spec
    one = SieveSpec.from_dict({**base, "skip_mode": "variable", "offset": 2})
    assert one.offsets == range(2, 3) and "offset_max" not in one.to_dict()
