"""The oracle sieve: one seed at a time through the plain-Python generators. Only for tests and tiny ranges."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.prng.generators.reference import generate
from pipeline.prng.sieve.spec import SieveSpec


def reference_score(spec: SieveSpec, seed: int) -> tuple[int, int] | None:
    """(best skip, matches) for one seed, or None when no skip reaches the threshold (fixed skips; the
    variable-skip oracle is pipeline.prng.sieve.variable.reference_variable_sieve)."""
    best: tuple[int, int] | None = None
    stream = generate(spec.generator, seed, spec.position(spec.k - 1, spec.skip_max) + 1)
    for skip in spec.skips:
        outs = [stream[spec.position(j, skip)] for j in range(spec.k)]
        matches = sum(o % spec.modulus == r for o, r in zip(outs, spec.residues, strict=True))
        if matches >= spec.need and (best is None or matches > best[1]):
            best = (skip, matches)
    return best


def reference_sieve(spec: SieveSpec, seeds: Iterable[int]) -> list[tuple[int, int, int]]:
    found = []
    for seed in seeds:
        hit = reference_score(spec, int(seed))
        if hit is not None:
            found.append((int(seed), hit[0], hit[1]))
    return found
