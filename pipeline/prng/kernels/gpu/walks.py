"""Plans of the walks of library calls (mapped.cu): java.util.Random's nextInt / nextDouble, and MT19937's calls
for numpy randint, PHP mt_rand and Python randrange (CPython's init_by_array seeding included), or `mod` on
Python's stream.

Kernels sit below mappings/ and sieve/, so the caller passes what those define: `steps(calls)`, how many outputs
a lane walks for that many calls (pipeline.prng.mappings.torch_path.buffer_length: the calls plus six standard
deviations of the rejections), `param` (pipeline.prng.mappings.library.walk_param: numpy's mask, Python's shift,
PHP's limit) and, for CPython's seeding, init_genrand(19650218)'s 624 words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.prng.kernels.gpu.filters import MT_CURSOR_REACH
from pipeline.prng.kernels.gpu.plan import Plan, table, u32
from pipeline.prng.kernels.params import fastmod_params

NOT_CHECKED = 0xFFFFFFFF
JAVA_MAPPINGS = ("java_next_int", "java_next_double")
MT_MAPPINGS = ("numpy_randint", "python_randrange", "php_mt_rand", "mod")  # mod: for python_mt19937's stream
MT_KIND = {"numpy_randint": 0, "python_randrange": 1, "php_mt_rand": 2, "mod": 4}
PHP_POW2_KIND = 3


def call_table(spec: Any) -> tuple[int, list[int], int]:
    """(calls the filter reads, the flat [skip, call] table of wanted values (NOT_CHECKED elsewhere), skips)."""
    order = spec.check_order()[: spec.filter_length()]
    rows = [{spec.position(j, s): spec.residues[j] for j in order} for s in spec.skips]
    n_calls = max(max(r) for r in rows) + 1
    flat = [row.get(c, NOT_CHECKED) for row in rows for c in range(n_calls)]
    return n_calls, flat, len(rows)


def _mod(n: int) -> tuple[Any, Any]:
    _d, magic, shift = fastmod_params(n)
    return u32(magic), u32(shift - 32)


def java_plan(spec: Any, steps: Callable[[int], int]) -> Plan:
    if spec.mapping not in JAVA_MAPPINGS:
        raise ValueError(f"no java walk for mapping {spec.mapping!r}; it has {', '.join(JAVA_MAPPINGS)}")
    n_calls, tbl, n_skips = call_table(spec)
    n = spec.modulus
    pow2 = n & (n - 1) == 0
    kind = 2 if spec.mapping == "java_next_double" else 1 if pow2 else 0
    pow2_shift = 31 - (n.bit_length() - 1) if pow2 else 0
    return Plan(
        f"walk_java_{kind}",
        (table(tbl), u32(n_skips), u32(n_calls), u32(steps(n_calls)), u32(n), *_mod(n), u32(pow2_shift)),
    )


def mt_fits(spec: Any, steps: Callable[[int], int]) -> bool:
    """Whether the spec's calls fit in the 227 outputs the cursors reach."""
    return spec.mapping in MT_MAPPINGS and steps(call_table(spec)[0]) <= MT_CURSOR_REACH


def mt_plan(spec: Any, steps: Callable[[int], int], param: int, by_array_base: list[int] | None) -> Plan:
    """by_array_base: init_genrand(19650218)'s words for CPython's init_by_array seeding, None for init_genrand."""
    if spec.mapping not in MT_MAPPINGS:
        raise ValueError(f"no MT walk for mapping {spec.mapping!r}; it has {', '.join(MT_MAPPINGS)}")
    n_calls, tbl, n_skips = call_table(spec)
    walk = steps(n_calls)
    if walk > MT_CURSOR_REACH:
        raise ValueError(f"the calls need {walk} outputs; the MT walk reaches {MT_CURSOR_REACH}")
    n = spec.modulus
    kind = PHP_POW2_KIND if spec.mapping == "php_mt_rand" and n & (n - 1) == 0 else MT_KIND[spec.mapping]
    by_array = by_array_base is not None
    return Plan(
        f"walk_mt_{kind}_{int(by_array)}",
        (
            table(tbl),
            u32(n_skips),
            u32(n_calls),
            u32(walk),
            u32(n),
            *_mod(n),
            u32(param),
            table(by_array_base or []),
        ),
    )
