"""Family presets: the operators' eleven generators against vectors produced by their own reference code
(tests/fixtures/prng_cluster), the library presets against published values, and every path against the
plain-Python reference for every preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seed_lists import scattered

from pipeline.prng.generators import families
from pipeline.prng.generators import reference as ref
from pipeline.prng.generators.families import PRESETS, PRNG_CLUSTER_FAMILIES
from pipeline.prng.generators.reference import GENERATORS, generate
from pipeline.prng.sieve import SieveSpec, sieve_range, verify_seeds
from pipeline.prng.sieve.reference import reference_sieve

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures/prng_cluster/vectors.json").read_text())
SEEDS = (0, 1, 12345, 2**32 - 1)
TOP = 1 << 32


def test_fixture_covers_their_eleven_families() -> None:
    assert tuple(VECTORS["generators"]) == PRNG_CLUSTER_FAMILIES
    assert VECTORS["seeds"] == list(SEEDS)


@pytest.mark.parametrize("family", PRNG_CLUSTER_FAMILIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_prng_cluster_reference_reproduces_their_vectors(family: str, seed: int) -> None:
    assert generate(f"prng_cluster.{family}", seed, 16) == VECTORS["generators"][family]["outputs"][str(seed)]


@pytest.mark.parametrize("seed", SEEDS)
def test_their_kernel_only_variants(seed: int) -> None:
    variants = VECTORS["kernel_only_variants"]
    assert generate("prng_cluster.xorshift64_kernel", seed, 16) == variants["xorshift64_kernel_full64"][str(seed)]
    assert generate("prng_cluster.lcg32_hybrid", seed, 16) == variants["lcg32_hybrid_kernel"][str(seed)]
    # their pcg32_hybrid kernel draws from the state after the step: draw j is their CPU output j+1
    assert generate("prng_cluster.pcg32_hybrid", seed, 15) == VECTORS["generators"]["pcg32"]["outputs"][str(seed)][1:]


def _window_spec(generator: str, seed: int, modulus: int) -> SieveSpec:
    return SieveSpec(generator, tuple(v % modulus for v in generate(generator, seed, 16)), 1.0, modulus=modulus)


@pytest.mark.parametrize("family", PRNG_CLUSTER_FAMILIES)
def test_prng_cluster_vectors_through_fast_and_torch_sieves(family: str) -> None:
    """Each vector row, as a 16-draw window (mod 1000 as their sieve compares, and mod 2**31 for 31 bits of
    each output), is passed by its seed on the numba and torch paths, with all 16 draws matching."""
    name = f"prng_cluster.{family}"
    for seed in SEEDS:
        row = VECTORS["generators"][family]["outputs"][str(seed)]
        lo, hi = max(0, seed - 40), min(TOP, seed + 40)
        for modulus in (1000, 2**31):
            spec = SieveSpec(name, tuple(v % modulus for v in row), 1.0, modulus=modulus)
            for path in ("fast", "fallback"):
                assert (seed, 0, 16) in sieve_range(spec, lo, hi, device="cpu", path=path).survivors(), (path, seed)


def test_library_presets_published_values() -> None:
    assert generate("minstd_rand0", 1, 10000)[-1] == 1043618065  # C++ [rand.predef]
    assert generate("minstd", 1, 10000)[-1] == 399268537
    key_zero = ref.philox4x32_block((0, 0, 0, 0), (0, 0))
    assert key_zero == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]  # Random123 kat_vectors, philox4x32_10
    assert generate("prng_cluster.philox4x32", 0, 1) == [0x6627E8D5]


def test_same_names_differ_where_their_definitions_differ() -> None:
    assert generate("java_lcg", 0, 1) == [(-1155484576) & 0xFFFFFFFF]  # new Random(0).nextInt()
    assert generate("prng_cluster.java_lcg", 0, 1) == [0]
    assert generate("pcg32", 0, 1) == [1203932051]
    assert generate("prng_cluster.pcg32", 0, 1) == [0]
    assert generate("lcg32", 0, 1) == [1013904223]
    assert generate("prng_cluster.lcg32", 0, 1) == [12345]


@pytest.mark.parametrize("name", ["java_lcg", "lcg32", "minstd", "xorshift32", "pcg32", "mt19937", "php_mt_rand"])
def test_generic_family_streams_match_the_hand_written_library_generators(name: str) -> None:
    stream = ref.family_stream(PRESETS[name].definition)
    for seed in (0, 1, 2**31 - 1, 2**32 - 1):
        it = stream(seed)
        assert [next(it) for _ in range(700)] == generate(name, seed, 700)


def test_every_preset_is_in_the_module_table() -> None:
    doc = families.__doc__ or ""
    for name in PRESETS:
        assert f"- `{name}`: " in doc, name
    assert set(GENERATORS) == set(PRESETS)
    for name in ("lcg32", "java_lcg", "pcg32", "minstd", "xorshift32", "mt19937", "php_mt_rand"):
        assert name in GENERATORS


@st.composite
def preset_cases(draw: st.DrawFn) -> tuple[SieveSpec, int, int]:
    generator = draw(st.sampled_from(GENERATORS))
    n = draw(st.sampled_from([1, 40, 150]))
    where = draw(st.sampled_from(["zero", "top", "any"]))
    start = 0 if where == "zero" else TOP - n if where == "top" else draw(st.integers(0, TOP - n))
    seed = start + draw(st.integers(0, n - 1))
    skip_max = draw(st.integers(0, 2))
    skip = draw(st.integers(0, skip_max))
    offset = draw(st.sampled_from([0, 5, 300]))
    k = draw(st.integers(1, 5))
    modulus = draw(st.sampled_from([2, 10, 1000, 2**31]))
    stream = generate(generator, seed, offset + k * (skip + 1) + 1)
    residues = [stream[offset + j * (skip + 1) + skip] % modulus for j in range(k)]
    if draw(st.booleans()):
        residues[0] = (residues[0] + 1) % modulus
    spec = SieveSpec(
        generator,
        tuple(residues),
        draw(st.sampled_from([0.2, 0.6, 1.0])),
        modulus=modulus,
        offset=offset,
        skip_max=skip_max,
        direction=draw(st.sampled_from(["forward", "reverse"])),
    )
    return spec, start, start + n


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preset_cases())
def test_reference_numba_torch_identical_for_every_preset(case: tuple[SieveSpec, int, int]) -> None:
    spec, start, end = case
    expected = reference_sieve(spec, range(start, end))
    assert sieve_range(spec, start, end, device="cpu", path="fast").survivors() == expected
    assert sieve_range(spec, start, end, device="cpu", path="fallback").survivors() == expected
    picked = scattered(start, end)
    wanted = [s for s in expected if s[0] in set(picked.tolist())]
    assert verify_seeds(spec, picked, device="cpu").survivors() == wanted  # numba, run by run
    assert verify_seeds(spec, picked, device="cpu", path="fallback").survivors() == wanted


@pytest.mark.parametrize("generator", GENERATORS)
def test_every_preset_agrees_at_both_ends_of_the_seed_space(generator: str) -> None:
    for lo, hi in ((0, 64), (TOP - 64, TOP)):
        spec = _window_spec(generator, lo + 7, 10)
        spec = SieveSpec(generator, spec.residues[:6], 0.5, modulus=10, skip_max=1)
        expected = reference_sieve(spec, range(lo, hi))
        assert (lo + 7, 0, 6) in expected
        assert sieve_range(spec, lo, hi, device="cpu", path="fast").survivors() == expected
        assert sieve_range(spec, lo, hi, device="cpu", path="fallback").survivors() == expected
