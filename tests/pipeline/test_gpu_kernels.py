"""The GPU kernel source run on the CPU (kernel_shim.py), built with AddressSanitizer and UBSan, against the
references: every preset's filter at both ends of the seed space and at MT19937's far positions, every mapping's
walk (rejections and exhausted step budgets included), the variable-skip rows over several offsets and strategies
and the GPU path's variable survivors, the mt_words kernel, then hypothesis' cases (the strategies of the numba /
torch property tests, and one for variable skip). Candidates and rows are compared exactly with kernel_checks.py's
models, survivors (after the GPU path's torch scoring, pipeline.prng.sieve.gpu_path) with the reference sieves.

Planted mutations (one wrong shift, one wrong rejection bound, one wrong step of the variable scan) fail these
checks, and a table read one past its end stops the sanitized run: the checks and the sanitizers are live.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kernel_checks import TOP, check_family, check_variable, check_walk, planted_variable, rows
from kernel_shim import CpuBackend, KernelServerDied, SanitizedBackend, build, compiler
from test_mapping_paths import cases as mapping_cases
from test_sieve_paths import cases as family_cases

from pipeline.prng.generators import torch_gen
from pipeline.prng.generators.reference import GENERATORS
from pipeline.prng.mappings import library as lib
from pipeline.prng.mappings import torch_path as mtp
from pipeline.prng.sieve import SieveSpec, gpu_path
from pipeline.prng.sieve.spec import PRNG_CLUSTER_STRATEGIES
from pipeline.prng.sieve.variable import reference_variable_rows, reference_variable_sieve

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++ or clang++): apt-get install g++")
EXAMPLES = 25
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])  # fmt: skip


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SanitizedBackend]:
    where = tmp_path_factory.mktemp("sanitized")
    be = SanitizedBackend(build(where, sanitize=True), where / "server.stderr")
    yield be
    be.close()


FAMILY_CORNERS = [
    (0, (1, 0, 2), dict(modulus=3, threshold=0.5, skip_max=1, offset=2)),
    # far positions (MT: twisted words of the op program), reverse order, a skip range not starting at 0
    (TOP - 256, (4, 1, 3), dict(modulus=5, threshold=0.6, direction="reverse", offset=230, skip_min=1, skip_max=2)),
]


def family_corners(be: Any, first: bool = False) -> dict[str, Any]:
    bad: dict[str, Any] = {}
    for g in GENERATORS:
        for lo, residues, kw in FAMILY_CORNERS:
            result = check_family(be, SieveSpec(g, residues, **kw), range(lo, lo + 256))
            if result[:2] != (True, True) or not result[2]:
                bad[f"{g}@{lo}"] = result
                if first:
                    return bad
    for offset in (400, 1250, 2600):  # MT words of the 2nd, 3rd and 5th twist
        spec = SieveSpec("php_mt_rand", (1, 0, 1), 0.6, modulus=2, offset=offset, skip_max=1, direction="reverse")
        result = check_family(be, spec, range(TOP - 40, TOP))
        if result[:2] != (True, True) or result[2] < 5:
            bad[f"php_mt_rand/offset {offset}"] = result
    return bad


WALK_CORNERS = [  # generator, mapping, n, offset, skip, planted seed, first seed of the block, threshold
    ("java_lcg", "java_next_int", 1000, 0, 1, 12345, 12245, 0.6),
    ("java_lcg", "java_next_int", (1 << 30) + 1, 2, 0, TOP - 7, TOP - 160, 0.5),
    ("java_lcg", "java_next_int", (1 << 30) + 1, 5, 0, TOP - 7, TOP - 160, 0.5),  # its 5th output is rejected
    ("java_lcg", "java_next_int", 1024, 1, 2, 77, 0, 0.6),
    ("java_lcg", "java_next_double", 1000, 3, 1, 4242, 4100, 0.6),
    ("java_lcg", "java_next_double", 7, 0, 0, 5, 0, 0.8),
    ("java_lcg", "java_next_double", 2**31 - 1, 1, 0, 2**31, 2**31 - 80, 0.8),  # a bound this wide reads next(27)
    ("mt19937", "numpy_randint", 1000, 0, 1, 12345, 12245, 0.6),
    ("mt19937", "numpy_randint", 3, 2, 0, TOP - 7, TOP - 160, 0.9),  # mask 3: a quarter redrawn
    ("mt19937", "php_mt_rand", 3 << 29, 5, 0, 4242, 4100, 0.5),  # a quarter of the outputs redrawn
    ("mt19937", "php_mt_rand", 1024, 0, 1, 0, 0, 0.6),
    ("python_mt19937", "python_randrange", 1000, 0, 1, 777, 700, 0.6),
    ("python_mt19937", "python_randrange", 5, 3, 0, TOP - 1, TOP - 160, 0.9),  # 3 bits: 3 in 8 redrawn
    ("python_mt19937", "mod", 1000, 1, 0, 99, 0, 0.6),
]


def walk_corners(be: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Each case twice: with the usual step budget, and with none to spare (seeds run out and are scored)."""
    bad = {}
    for sigmas in (6.0, 0.0):
        monkeypatch.setattr(mtp, "SIGMAS", sigmas)
        for gen, mapping, n, offset, skip, planted, lo, thr in WALK_CORNERS:
            calls = lib.call_values(gen, mapping, planted, offset + 12 * (skip + 1), n)
            residues = tuple(calls[offset + j * (skip + 1) + skip] for j in range(10))
            spec = SieveSpec(gen, residues, thr, modulus=n, offset=offset, skip_max=skip, mapping=mapping)
            result = check_walk(be, spec, range(lo, min(lo + 160, TOP)))
            if result is None or result[:2] != (True, True) or not lib.reference_sieve(spec, [planted]):
                bad[f"{mapping}/{n}/sigmas {sigmas}"] = result
    return bad


def variable_corners(be: Any, first: bool = False) -> dict[str, Any]:
    bad: dict[str, Any] = {}
    for i, g in enumerate(GENERATORS):
        lo = 0 if i % 2 else TOP - 40
        targets = planted_variable(g, lo + 17, 3, 12, 50, random.Random(g))
        # a ring of 128 residues, and of 2048 (tolerance 300 reads past the seed's shared stream mid-scan)
        for strategies in (PRNG_CLUSTER_STRATEGIES, ((2, 0), (4, 300))):
            if not check_variable(be, g, 50, targets, [0, 3, 9], strategies, 6, range(lo, lo + 40)):
                bad[f"{g}/rows/tolerance {strategies[-1][1]}"] = False
                if first:
                    return bad
        spec = SieveSpec(g, tuple(targets), 0.5, modulus=50, offset=3, skip_mode="variable")
        got = [(*r[:3], list(r[3])) for r in rows(gpu_path.kernel_variable(spec, range(lo, lo + 40), "cpu", be))]
        want = [tuple(r) for r in reference_variable_sieve(spec, range(lo, lo + 40))]
        if [tuple(r) for r in got] != want or not any(r[0] == lo + 17 for r in want):
            bad[f"{g}/survivors"] = [len(got), len(want)]
    return bad


def test_variable_pairs_past_the_shared_stream(backend: SanitizedBackend) -> None:
    """An offset beyond the residues a seed's pairs share: every pair there runs on its own ring."""
    for g in ("prng_cluster.mt19937", "prng_cluster.lcg32", "prng_cluster.sfc64"):
        targets = planted_variable(g, 3, 1030, 8, 20, random.Random(g))
        assert check_variable(backend, g, 20, targets, [2, 1030], PRNG_CLUSTER_STRATEGIES, 5, range(0, 12)), g


def test_variable_block_rows_are_the_contract_of_i23(backend: SanitizedBackend) -> None:
    """gpu_path.kernel_rows over offset..offset_max and every strategy: row for row
    pipeline.prng.sieve.variable.reference_variable_rows, the block contract the numba kernel keeps too."""
    for i, g in enumerate(GENERATORS[::3]):
        lo = 0 if i % 2 else TOP - 24
        targets = planted_variable(g, lo + 5, 4, 10, 30, random.Random(g))
        spec = SieveSpec(g, tuple(targets), 0.7, modulus=30, offset=1, offset_max=12, skip_mode="variable")
        got = sorted(rows(gpu_path.kernel_rows(spec, range(lo, lo + 24), "cpu", backend)))
        want = reference_variable_rows(spec, range(lo, lo + 24))
        assert got == want and (lo + 5, 4) in {r[:2] for r in want}, g


def test_every_preset_filter_at_the_corners(backend: SanitizedBackend) -> None:
    assert family_corners(backend) == {}


def test_every_mapping_walk_at_the_corners(backend: SanitizedBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    assert walk_corners(backend, monkeypatch) == {}


def test_variable_rows_and_survivors_for_every_preset(backend: SanitizedBackend) -> None:
    assert variable_corners(backend) == {}


def test_mt_words_kernel_feeds_the_torch_scoring(backend: SanitizedBackend) -> None:
    """The init words the GPU path's scoring takes from the mt_words kernel, against torch's own chain, and the
    mapped torch path fed by them."""
    seeds = torch.tensor([0, 1, 2**31 - 1, 2**31, TOP - 1, 12345, 987654321], dtype=torch.int64)
    idx = [0, 1, 2, 226, 397, 398, 623]
    got, want = backend.mt_words(seeds.to(torch.int32), idx), torch_gen._mt_words(seeds.to(torch.int32), idx)
    assert all(torch.equal(got[i], want[i]) for i in idx)
    for mapping, modulus in (("numpy_randint", 600), ("php_mt_rand", 1000), ("mod", 7)):
        values = mtp.call_values("mt19937", mapping, seeds, 60, modulus, backend.mt_words)
        for i, s in enumerate(seeds.tolist()):
            assert values[:, i].tolist() == lib.call_values("mt19937", mapping, s, 60, modulus)


@st.composite
def variable_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    gen = draw(st.sampled_from(GENERATORS))
    n = draw(st.sampled_from([1, 12, 40]))
    where = draw(st.sampled_from(["zero", "top", "any"]))
    lo = 0 if where == "zero" else TOP - n if where == "top" else draw(st.integers(0, TOP - n))
    modulus = draw(st.sampled_from([2, 7, 50, 1000]))
    k = draw(st.integers(1, 10))
    targets = planted_variable(gen, lo + draw(st.integers(0, n - 1)), draw(st.sampled_from([0, 2, 5])), k, modulus,
                               random.Random(draw(st.integers(0, 99))))  # fmt: skip
    strategies = tuple(draw(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 12)), min_size=1, max_size=3)))
    offsets = sorted(draw(st.sets(st.sampled_from([0, 1, 2, 5, 17]), min_size=1, max_size=3)))
    return gen, modulus, targets, offsets, strategies, draw(st.integers(1, k)), range(lo, lo + n)


@pytest.mark.slow
@PROPERTY
@given(family_cases())
def test_filters_on_hypothesis_cases(backend: SanitizedBackend, case: tuple[SieveSpec, int, int]) -> None:
    spec, start, end = case
    assert check_family(backend, spec, range(start, end))[:2] == (True, True)


@pytest.mark.slow
@PROPERTY
@given(mapping_cases())
def test_walks_on_hypothesis_cases(backend: SanitizedBackend, case: tuple[SieveSpec, int, int]) -> None:
    spec, start, end = case
    result = check_walk(backend, spec, range(start, end))
    assume(result is not None)  # MT calls past the 227 outputs the cursors reach run on the torch path
    assert result is not None and result[:2] == (True, True)


@pytest.mark.slow
@PROPERTY
@given(variable_cases())
def test_variable_rows_on_hypothesis_cases(backend: SanitizedBackend, case: tuple[Any, ...]) -> None:
    assert check_variable(backend, *case)


NUMPY_BOUND = "v = u & param;\n                ok = v < bound;"
MUTATIONS = {  # name: (text in the source, its mutation, the check that must notice)
    "wrong shift (MT temper)": ("y ^= (y << 15) & 0xEFC60000u;", "y ^= (y << 14) & 0xEFC60000u;", "filters"),
    "wrong rejection bound (numpy randint)": (NUMPY_BOUND, NUMPY_BOUND.replace("v < bound", "v <= bound"), "walks"),
    "wrong step after a match (variable)": ("pos += found + 1u;", "pos += found;", "variable"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", MUTATIONS)
def test_a_planted_mutation_fails_the_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    from pipeline.prng.kernels.gpu.source import source

    text, mutated, check = MUTATIONS[name]
    assert source().count(text) == 1
    be = CpuBackend(build(tmp_path, sanitize=False, text=source().replace(text, mutated)))
    checks = {"filters": lambda b: family_corners(b, first=True), "walks": lambda b: walk_corners(b, monkeypatch),
              "variable": lambda b: variable_corners(b, first=True)}  # fmt: skip
    assert checks[check](be), f"{name}: the {check} checks did not notice"


def test_a_table_read_past_its_end_stops_the_sanitized_run(tmp_path: Path) -> None:
    """xorshift32 reading one entry past its position table: ASan stops the kernel server and names the overflow."""
    from pipeline.prng.kernels.gpu.source import source

    text = "for (u32 e = first[p]; e < first[p + 1]; e++) hit |= divides(x, tgt[e], dv);"
    assert source().count(text) == 1
    lib_path = build(tmp_path, sanitize=True, text=source().replace(text, text.replace("[p + 1]", "[p + 2]")))
    be = SanitizedBackend(lib_path, tmp_path / "server.stderr")
    try:
        with pytest.raises(KernelServerDied, match="heap-buffer-overflow"):
            check_family(be, SieveSpec("xorshift32", (1, 0, 2), 0.5, modulus=3), range(0, 64))
    finally:
        be.close()
