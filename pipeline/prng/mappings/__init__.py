"""Output mappings (`data.mapping`): library calls as the sieve compares them. `library` holds the definitions and
the plain-Python oracle, `numba_path` the compiled per-seed walk (cpu), `torch_path` the batched one (cpu or GPU)."""

from pipeline.prng.mappings.library import (
    MAPPING_NAMES,
    MAPPINGS,
    MOD,
    call_stream,
    call_values,
    chance_per_draw,
    mapping_error,
    uses_mapped_path,
)

__all__ = [
    "MAPPINGS",
    "MAPPING_NAMES",
    "MOD",
    "call_stream",
    "call_values",
    "chance_per_draw",
    "mapping_error",
    "uses_mapped_path",
]
