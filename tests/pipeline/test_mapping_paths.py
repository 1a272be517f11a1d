"""Output mappings (issue 17): every mapping reproduces the real libraries' draws (tests/fixtures/mappings/
vectors.json) on the reference, numba and torch paths, and the three mapped sieves return identical survivor sets,
rejection branches, lane overflow and exhausted torch buffers included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seed_lists import scattered

from pipeline.prng.generators.reference import generate
from pipeline.prng.mappings import library as lib
from pipeline.prng.mappings import numba_path, torch_path
from pipeline.prng.sieve import SieveSpec, sieve_range, verify_seeds

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures/mappings/vectors.json").read_text())["mappings"]
SEEDS = (0, 1, 12345, 5489, 2**32 - 1)
TOP = 1 << 32
# vectors.json name -> (generator, mapping); every draw there is modulo / bound 1000
LIBRARY = {
    "java_nextint_bound": ("java_lcg", "java_next_int"),
    "java_nextdouble_scaled": ("java_lcg", "java_next_double"),
    "numpy_randint": ("mt19937", "numpy_randint"),
    "python_randrange": ("python_mt19937", "python_randrange"),
    "php_mt_rand": ("mt19937", "php_mt_rand"),
    "java_nextint_raw": ("java_lcg", "mod"),
    "cpp_mt19937_mod": ("mt19937", "mod"),
}
# (generator, mapping, moduli): moduli chosen so every branch runs. java_next_int: 1073741825 rejects ~50%, 1024 is
# the multiply-shift branch; numpy: 600 rejects 41%, 1024 none; python: 1024 rejects 50%; php: 1431655766
# rejects a third, 1024 takes the low bits
PAIRS = (
    ("java_lcg", "java_next_int", (1000, 1024, 7, 1073741825)),
    ("java_lcg", "java_next_double", (1000, 2, 2**31 - 1)),
    ("mt19937", "numpy_randint", (600, 1000, 3, 1024)),
    ("prng_cluster.mt19937", "numpy_randint", (600,)),
    ("mt19937", "php_mt_rand", (1000, 1431655766, 1024)),
    ("python_mt19937", "python_randrange", (600, 1000, 1024, 5)),
    ("python_mt19937", "mod", (1000, 7)),
)


@pytest.mark.parametrize("name", LIBRARY)
def test_every_path_reproduces_the_library_draws(name: str) -> None:
    generator, mapping = LIBRARY[name]
    draws = {int(s): d for s, d in VECTORS[name]["draws"].items()}
    assert tuple(draws) == SEEDS
    count = len(draws[0])
    batch = torch_path.call_values(generator, mapping, torch.tensor(SEEDS, dtype=torch.int64), count, 1000)
    for i, seed in enumerate(SEEDS):
        assert lib.call_values(generator, mapping, seed, count, 1000) == draws[seed], (name, seed, "reference")
        assert numba_path.call_values(generator, mapping, seed, count, 1000) == draws[seed], (name, seed, "numba")
        assert batch[:, i].tolist() == draws[seed], (name, seed, "torch")


@pytest.mark.parametrize("name", [n for n in LIBRARY if LIBRARY[n][1] != "mod"])
def test_each_library_seed_is_recovered_from_its_draws_on_every_path(name: str) -> None:
    """Ten consecutive real draws from call 5 on are a window its seed (and only it, in its block) passes."""
    generator, mapping = LIBRARY[name]
    for seed in SEEDS:
        window = VECTORS[name]["draws"][str(seed)][5:15]
        spec = SieveSpec(generator, tuple(window), 1.0, offset=5, mapping=mapping)
        lo = min(max(0, seed - 20), TOP - 40)
        for path in ("fast", "fallback", "reference"):
            assert sieve_range(spec, lo, lo + 40, device="cpu", path=path).survivors() == [(seed, 0, 10)], path
        assert verify_seeds(spec, [seed, lo, lo + 39], device="cpu").survivors() == [(seed, 0, 10)]


def test_python_generator_is_cpython_random() -> None:
    for seed in SEEDS:
        assert generate("python_mt19937", seed, 60) == VECTORS["python_getrandbits32"]["draws"][str(seed)]
    raw = torch_path.raw_outputs("python_mt19937", torch.tensor(SEEDS, dtype=torch.int64), 700)
    for i, seed in enumerate(SEEDS):  # past the first twist: the three-slice twist
        assert raw[:, i].tolist() == generate("python_mt19937", seed, 700)


@pytest.mark.parametrize(("generator", "mapping", "modulus"), [(g, m, n) for g, m, ms in PAIRS for n in ms])
def test_long_call_streams_agree(generator: str, mapping: str, modulus: int) -> None:
    """1500 calls (thousands of attempts): every acceptance boundary is met, and MT's twists are crossed."""
    seeds = (0, 99, 2**32 - 1)
    batch = torch_path.call_values(generator, mapping, torch.tensor(seeds, dtype=torch.int64), 1500, modulus)
    for i, seed in enumerate(seeds):
        expected = lib.call_values(generator, mapping, seed, 1500, modulus)
        assert numba_path.call_values(generator, mapping, seed, 1500, modulus) == expected
        assert batch[:, i].tolist() == expected


def planted(generator: str, mapping: str, seed: int, modulus: int, **window: int) -> tuple[int, ...]:
    k, offset, first, skip = window["k"], window["offset"], window["first_draw"], window["skip"]
    last = offset + (first + k - 1) * (skip + 1) + skip
    calls = lib.call_values(generator, mapping, seed, last + 1, modulus)
    residues = [calls[offset + (first + j) * (skip + 1) + skip] for j in range(k)]
    for j in range(min(window["noise"], k)):
        residues[j] = (residues[j] + 1) % modulus
    return tuple(residues)


@st.composite
def cases(draw: st.DrawFn) -> tuple[SieveSpec, int, int]:
    generator, mapping, moduli = draw(st.sampled_from(PAIRS))
    modulus = draw(st.sampled_from(moduli))
    n = draw(st.sampled_from([1, 64, 300] if generator == "java_lcg" else [1, 12, 40]))
    where = draw(st.sampled_from(["zero", "top", "any"]))
    start = 0 if where == "zero" else TOP - n if where == "top" else draw(st.integers(0, TOP - n))
    seed = start + draw(st.integers(0, n - 1))
    skip_min = draw(st.integers(0, 2))
    skip_max = skip_min + draw(st.integers(0, 2))
    window = {
        "k": draw(st.integers(1, 6)),
        "offset": draw(st.sampled_from([0, 3, 17, 230])),  # 230: MT outputs beyond the lazy first 227
        "first_draw": draw(st.integers(0, 4)),
        "skip": draw(st.integers(skip_min, skip_max)),
        "noise": draw(st.integers(0, 2)),
    }
    spec = SieveSpec(
        generator,
        planted(generator, mapping, seed, modulus, **window),
        draw(st.sampled_from([0.2, 0.5, 0.75, 1.0])),
        modulus=modulus,
        offset=window["offset"],
        first_draw=window["first_draw"],
        skip_min=skip_min,
        skip_max=skip_max,
        direction=draw(st.sampled_from(["forward", "reverse"])),
        mapping=mapping,
    )
    return spec, start, start + n


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_reference_numba_torch_identical(case: tuple[SieveSpec, int, int]) -> None:
    spec, start, end = case
    expected = lib.reference_sieve(spec, range(start, end))
    fast = sieve_range(spec, start, end, device="cpu", path="fast")
    fallback = sieve_range(spec, start, end, device="cpu", path="fallback")
    assert fast.survivors() == expected
    assert fallback.survivors() == expected
    picked = scattered(start, end)
    wanted = [s for s in expected if s[0] in set(picked.tolist())]
    assert verify_seeds(spec, picked, device="cpu").survivors() == wanted  # numba, run by run
    assert verify_seeds(spec, picked, device="cpu", path="fallback").survivors() == wanted
    assert (fast.path, fallback.path) == ("fast", "fallback")
    assert fast.seeds_tested == fallback.seeds_tested == end - start


@pytest.mark.parametrize(("generator", "mapping", "modulus"), [(g, m, ms[0]) for g, m, ms in PAIRS])
def test_both_ends_of_the_seed_space(generator: str, mapping: str, modulus: int) -> None:
    for lo, hi in ((0, 24), (TOP - 24, TOP)):
        seed = lo + 7 if lo == 0 else TOP - 1
        window = {"k": 6, "offset": 2, "first_draw": 1, "skip": 1, "noise": 0}
        spec = SieveSpec(generator, planted(generator, mapping, seed, modulus, **window), 0.5, modulus=modulus,
                         offset=2, first_draw=1, skip_max=1, mapping=mapping)  # fmt: skip
        expected = lib.reference_sieve(spec, range(lo, hi))
        assert (seed, 1, 6) in expected
        assert sieve_range(spec, lo, hi, device="cpu", path="fast").survivors() == expected
        assert sieve_range(spec, lo, hi, device="cpu", path="fallback").survivors() == expected


def _rejecting_spec(generator: str, mapping: str, modulus: int, seed: int) -> SieveSpec:
    window = {"k": 8, "offset": 4, "first_draw": 0, "skip": 0, "noise": 3}
    return SieveSpec(generator, planted(generator, mapping, seed, modulus, **window), 0.25, modulus=modulus,
                     offset=4, skip_max=2, mapping=mapping)  # fmt: skip


@pytest.mark.parametrize(
    ("generator", "mapping"), [("mt19937", "numpy_randint"), ("python_mt19937", "python_randrange")]
)
def test_seeds_whose_lane_words_run_out_are_walked_again(generator: str, mapping: str) -> None:
    """With lanes holding 3 outputs per seed almost every filter walk overflows into the scalar walker."""
    spec = _rejecting_spec(generator, mapping, 600, 5)
    plan = numba_path.MappedPlan(spec)
    plan.lane_words = numba_path.MT_M + 3
    code = plan.run_chunk(0, 200, np.empty(200, dtype=np.int32))
    got = [(i, spec.skip_min + (int(c) >> 16), int(c) & 0xFFFF) for i, c in enumerate(code) if c >= 0]
    assert got == lib.reference_sieve(spec, range(200))
    assert got and got[0][0] == 5


@pytest.mark.parametrize(("generator", "mapping", "modulus"), [("mt19937", "numpy_randint", 600),
                                                                ("java_lcg", "java_next_int", 1073741825),
                                                                ("python_mt19937", "python_randrange", 1024),
                                                                ("mt19937", "php_mt_rand", 1431655766)])  # fmt: skip
def test_seeds_that_exhaust_the_torch_buffer_are_finished_exactly(
    monkeypatch: pytest.MonkeyPatch, generator: str, mapping: str, modulus: int
) -> None:
    spec = _rejecting_spec(generator, mapping, modulus, 9)
    expected = lib.reference_sieve(spec, range(60))
    monkeypatch.setattr(torch_path, "SIGMAS", -3.0)  # buffers below the mean: most seeds run out
    seeds = torch.arange(60, dtype=torch.int64)
    calls = lib.last_call(spec) + 1
    _, exhausted = torch_path.call_matrix(generator, mapping, seeds, calls, modulus)
    assert int(exhausted.sum()) > 10
    assert sieve_range(spec, 0, 60, device="cpu", path="fallback").survivors() == expected
    assert any(s == 9 for s, _k, _m in expected)


def test_numba_chunks_do_not_lose_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _rejecting_spec("java_lcg", "java_next_int", 1000, 3000)
    whole = sieve_range(spec, 10, 9000, device="cpu", path="fast").survivors()
    monkeypatch.setattr(numba_path, "CHUNK", 777)
    assert sieve_range(spec, 10, 9000, device="cpu", path="fast").survivors() == whole
    assert any(s == 3000 for s, _k, _m in whole)
