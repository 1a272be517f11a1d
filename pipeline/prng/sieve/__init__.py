"""The seed sieve: which 32-bit seeds reproduce a window of draws, and at which skip.

Modules: dispatch (sieve_range / verify_seeds, path choice), spec (SieveSpec, validation), fast (numba),
torch_path (portable torch, cpu or GPU), reference (plain Python, the oracle in tests), variable (the variable-skip
semantics, oracle and chance), rows (variable_rows / variable_rows_of: every passing offset and strategy), rows_plan
(the numba block kernel of variable skip, shared by rows and dispatch).
"""

from pipeline.prng.sieve.dispatch import (
    GENERATORS,
    PATHS,
    SieveResult,
    default_device,
    generate,
    sieve_range,
    verify_seeds,
)
from pipeline.prng.sieve.rows import VariableRows, variable_rows, variable_rows_of
from pipeline.prng.sieve.spec import SieveSpec, SieveSpecError

__all__ = [
    "GENERATORS",
    "PATHS",
    "SieveResult",
    "SieveSpec",
    "SieveSpecError",
    "VariableRows",
    "default_device",
    "generate",
    "sieve_range",
    "variable_rows",
    "variable_rows_of",
    "verify_seeds",
]
