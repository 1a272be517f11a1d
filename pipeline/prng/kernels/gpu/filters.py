"""Plans of the fixed-skip filter kernels (sieve.cu, stream.cu), one per family, for any preset.

A filter entry is one (output position, target residue) pair: the first `filter_length` draws of the window under
every skip, since any passing seed matches one of them. A seed that hits an entry is a candidate; the candidates
then get the torch path's whole-window scoring (pipeline.prng.sieve.gpu_path), so survivors are those of the other
paths by construction of the filter. Kernels sit below sieve/: a spec is any object with SieveSpec's attributes.
"""

from __future__ import annotations

from typing import Any

from pipeline.prng.generators import families as fam
from pipeline.prng.generators import jump
from pipeline.prng.generators.mt_plan import MT_M, MT_N, mt_program
from pipeline.prng.kernels.gpu.plan import Plan, table, u32, u64
from pipeline.prng.kernels.params import divisibility_params, mod64_params

MT_CURSOR_REACH = MT_N - MT_M  # outputs the two cursors reach without a twisted word (227)
STREAM_KERNELS = {
    fam.Xorshift64: "sieve_xorshift64",
    fam.Xorshift128: "sieve_xorshift128",
    fam.Xoshiro256pp: "sieve_xoshiro256pp",
    fam.Sfc64: "sieve_sfc64",
}


def entries(spec: Any) -> list[tuple[int, int]]:
    """The distinct (position, target) filter entries of a spec, sorted."""
    order = spec.check_order()[: spec.filter_length()]
    return sorted({(spec.position(j, s), spec.residues[j]) for s in spec.skips for j in order})


def by_position(pairs: list[tuple[int, int]]) -> tuple[int, list[int], list[int]]:
    """(last position, first, targets) of sorted (position, target) entries for the kernels that walk output by
    output: the targets of position p are targets[first[p] : first[p+1]]."""
    last = pairs[-1][0]
    first = [0] * (last + 2)
    for p, _ in pairs:
        first[p + 1] += 1
    for p in range(last + 1):
        first[p + 1] += first[p]
    return last, first, [t for _, t in pairs]


def filter_plan(spec: Any) -> Plan:
    """The plan of the fused filter for `spec.generator` (every preset has one)."""
    pairs = entries(spec)
    div = tuple(u32(v) for v in divisibility_params(spec.modulus))
    d = fam.preset(spec.generator).definition
    if isinstance(d, fam.Lcg | fam.Pcg):
        return _jump_plan(spec.generator, pairs, div)
    if isinstance(d, fam.Xorshift32):
        last, first, targets = by_position(pairs)
        return Plan("sieve_xorshift32", (table(first), table(targets), u32(last), *map(u32, d.shifts), *div))
    if isinstance(d, fam.Mt19937):
        return _mt_plan(pairs, d.out_shift, div)
    if isinstance(d, fam.Philox4x32):
        pos, targets = [p for p, _ in pairs], [t for _, t in pairs]
        return Plan("sieve_philox", (table(pos), table(targets), u32(len(pairs)), u32(d.rounds), *div))
    return _stream_plan(spec.modulus, d, pairs, div)


def _jump_plan(generator: str, pairs: list[tuple[int, int]], div: tuple[Any, ...]) -> Plan:
    kind = jump.KIND[generator]
    d = fam.preset(generator).definition
    if isinstance(d, fam.Lcg) and kind in (jump.KIND_MINSTD, jump.KIND_MOD31) and d.out_shift:
        raise ValueError(f"{generator}: the modulus 2**31-1 kernels read the whole state (out_shift 0)")
    coefs = [jump.coefficients(generator, p) for p, _ in pairs]
    pmask, pshift, pout = jump.kernel_params(generator)
    return Plan(
        f"sieve_jump_{kind}",
        (
            table([a for a, _ in coefs], "uint64"),
            table([c for _, c in coefs], "uint64"),
            table([t for _, t in pairs]),
            u32(len(pairs)),
            *div,
            u64(pmask),
            u32(pshift),
            u64(pout),
        ),
    )


def _mt_plan(pairs: list[tuple[int, int]], out_shift: int, div: tuple[Any, ...]) -> Plan:
    """Outputs below 227 on the two cursors (no scratch); farther ones from mt_program's words in scratch."""
    if pairs[-1][0] < MT_CURSOR_REACH:
        last, first, targets = by_position(pairs)
        return Plan("sieve_mt_cursor", (table(first), table(targets), u32(last), u32(out_shift), *div))
    needed, ops, slot = mt_program(sorted({p for p, _ in pairs}))
    return Plan(
        "sieve_mt_program",
        (
            table(needed),
            u32(len(needed)),
            table([v for row in ops for v in row]),
            u32(len(ops)),
            table([slot[p] for p, _ in pairs]),
            table([t for _, t in pairs]),
            u32(len(pairs)),
            u32(out_shift),
            *div,
        ),
        scratch_words=len(needed) + len(ops),
    )


def _stream_plan(modulus: int, d: fam.Definition, pairs: list[tuple[int, int]], div: tuple[Any, ...]) -> Plan:
    last, first, targets = by_position(pairs)
    consts: tuple[int, int, int] = (0, 0, 0)
    shifts: tuple[int, int, int] = (0, 0, 0)
    wide = False
    if isinstance(d, fam.Xorshift64):
        consts, shifts, wide = (d.mult, 0, 0), d.shifts, d.out == "full64"
    elif isinstance(d, fam.Xorshift128):
        consts = d.init
    elif isinstance(d, fam.Xoshiro256pp | fam.Sfc64):
        consts, wide = d.init, True
    else:
        raise ValueError(f"no filter kernel for the family {type(d).__name__}")
    return Plan(
        STREAM_KERNELS[type(d)],
        (
            table(first),
            table(targets),
            u32(last),
            *map(u64, consts),
            *map(u32, shifts),
            u32(wide),
            u64(modulus),
            u64(mod64_params(modulus)),
            *div,
        ),
    )
