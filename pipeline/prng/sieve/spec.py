"""The sieve job description shared by the pipeline steps, the worker and every kernel path.

Validation lives here (one-line errors naming the field) so that a bad spec is refused before any work
starts, on the coordinator and on the worker alike.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cluster.errors import ConfigError
from pipeline.prng.chance import required_matches
from pipeline.prng.generators.jump import JUMP_GENERATORS
from pipeline.prng.generators.reference import ALL_GENERATORS, GENERATORS
from pipeline.prng.mappings.library import MOD, generator_error, mapping_error, uses_mapped_path

MAX_SEED = 1 << 32
MAX_WINDOW = 65535
MAX_SKIPS = 32767
# Stream generators (no jump-ahead) walk every output up to the last position, per candidate seed.
MAX_STREAM_POSITION = 1 << 20
# Every generator without an affine jump walks its stream output by output.
STREAM_GENERATORS = tuple(g for g in GENERATORS if g not in JUMP_GENERATORS)
DIRECTIONS = ("forward", "reverse")
SKIP_MODES = ("fixed", "variable")
# Their hybrid presets in dict order (strict_continuous, lenient_continuous, aggressive_reseed, balanced_hybrid,
# extreme_tolerance): (max consecutive misses, skip tolerance); a survivor's strategy is its index here.
PRNG_CLUSTER_STRATEGIES: tuple[tuple[int, int], ...] = ((3, 5), (10, 20), (5, 5), (7, 10), (20, 50))
MAX_STRATEGIES = 255
MAX_TOLERANCE = 1000
MAX_VARIABLE_DRAWS = 2048  # their hybrid kernels never examine a draw beyond this (the score still divides by k)
MAX_OFFSETS = 4096  # offsets one variable-skip spec may cover (offset..offset_max), as data.offset_range allows


class SieveSpecError(ConfigError):
    """A sieve spec field is invalid; the message names the field."""


@dataclass(frozen=True)
class SieveSpec:
    """Which positions of which generator to compare with the window's residues.

    Draw j of the window (time order) is compared with output `offset + (first_draw + j)*(skip+1) + skip`.
    `direction` only changes the checking order (reverse starts at the newest draw); survivors are identical.

    skip_mode="variable" searches each draw's skip instead (pipeline.prng.sieve.variable): `strategies` are
    (max consecutive misses, skip tolerance) pairs, default their five presets; `offset` outputs are discarded
    first; skip_min/skip_max/first_draw must stay 0 and direction forward. `offset_max` (variable mode only; None
    means `offset` alone) makes the spec cover every offset offset..offset_max: one residue stream per seed serves
    them all (pipeline.prng.sieve.variable.reference_variable_rows).

    mapping (pipeline.prng.mappings): how the library turns outputs into a draw; positions then count library
    calls, not outputs (a rejection sampler takes a seed-dependent number of outputs per call). "mod" (the raw
    output mod modulus, one output a call) is the default and leaves every payload as it was.
    """

    generator: str
    residues: tuple[int, ...]
    threshold: float
    modulus: int = 1000
    offset: int = 0
    first_draw: int = 0
    skip_min: int = 0
    skip_max: int = 0
    direction: str = "forward"
    skip_mode: str = "fixed"
    strategies: tuple[tuple[int, int], ...] = ()
    mapping: str = MOD
    offset_max: int | None = None

    def __post_init__(self) -> None:
        if self.generator not in ALL_GENERATORS:
            raise SieveSpecError(
                f"spec.generator {self.generator!r} is unknown; use one of {', '.join(ALL_GENERATORS)}"
            )
        for name in ("modulus", "offset", "first_draw", "skip_min", "skip_max"):
            object.__setattr__(self, name, _as_int(getattr(self, name), f"spec.{name}"))
        object.__setattr__(
            self, "residues", tuple(_as_int(r, f"spec.residues[{i}]") for i, r in enumerate(self.residues))
        )
        if not 2 <= self.modulus <= 1 << 31:
            raise SieveSpecError(f"spec.modulus={self.modulus} must be between 2 and 2**31")
        if not 1 <= len(self.residues) <= MAX_WINDOW:
            raise SieveSpecError(f"spec.residues has {len(self.residues)} draws; give 1..{MAX_WINDOW}")
        for i, r in enumerate(self.residues):
            if not 0 <= r < self.modulus:
                raise SieveSpecError(f"spec.residues[{i}]={r!r} must be an integer in [0, modulus={self.modulus})")
        if self.offset < 0 or self.first_draw < 0:
            raise SieveSpecError("spec.offset and spec.first_draw must be >= 0")
        if not 0 <= self.skip_min <= self.skip_max:
            raise SieveSpecError(f"spec.skip_min={self.skip_min}, skip_max={self.skip_max}: need 0 <= min <= max")
        if self.skip_max - self.skip_min + 1 > MAX_SKIPS:
            raise SieveSpecError(f"spec skip range has more than {MAX_SKIPS} skips; narrow skip_min..skip_max")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or not 0 < t <= 1:
            raise SieveSpecError(f"spec.threshold={t!r} must be a number with 0 < threshold <= 1")
        object.__setattr__(self, "threshold", float(t))
        if self.direction not in DIRECTIONS:
            raise SieveSpecError(f"spec.direction={self.direction!r} must be 'forward' or 'reverse'")
        self._check_skip_mode()
        self._check_offsets()
        problem = (
            mapping_error(self.mapping, self.generator, self.modulus, self.skip_mode)
            if isinstance(self.mapping, str)
            else f"{self.mapping!r} must be a mapping name"
        ) or generator_error(self.generator, self.skip_mode)
        if problem:
            raise SieveSpecError(f"spec.mapping={self.mapping!r}: {problem}")
        if self.variable:
            return
        last = self.position(self.k - 1, self.skip_max)
        walked = self.generator in STREAM_GENERATORS or uses_mapped_path(self.generator, self.mapping)
        if walked and last >= MAX_STREAM_POSITION:
            raise SieveSpecError(
                f"spec.offset/first_draw/skip_max put the last draw at output {last}; {self.generator} is limited "
                f"to positions below {MAX_STREAM_POSITION}: use a smaller offset or window"
            )

    def _check_skip_mode(self) -> None:
        if self.skip_mode not in SKIP_MODES:
            raise SieveSpecError(f"spec.skip_mode={self.skip_mode!r} must be 'fixed' or 'variable'")
        if not isinstance(self.strategies, list | tuple):
            raise SieveSpecError("spec.strategies must be a list of [max_misses, tolerance] pairs")
        pairs = []
        for i, pair in enumerate(self.strategies):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise SieveSpecError(f"spec.strategies[{i}]={pair!r} must be a [max_misses, tolerance] pair")
            misses, tol = (_as_int(v, f"spec.strategies[{i}]") for v in pair)
            if not 1 <= misses <= MAX_WINDOW or not 0 <= tol <= MAX_TOLERANCE:
                raise SieveSpecError(
                    f"spec.strategies[{i}]=({misses}, {tol}) needs 1 <= max_misses and "
                    f"0 <= tolerance <= {MAX_TOLERANCE}"
                )
            pairs.append((misses, tol))
        if self.skip_mode == "fixed":
            if pairs:
                raise SieveSpecError("spec.strategies is only meaningful with skip_mode='variable'")
            object.__setattr__(self, "strategies", ())
            return
        if len(pairs) > MAX_STRATEGIES:
            raise SieveSpecError(f"spec.strategies has {len(pairs)} entries; give at most {MAX_STRATEGIES}")
        object.__setattr__(self, "strategies", tuple(pairs) or PRNG_CLUSTER_STRATEGIES)
        if self.skip_min or self.skip_max or self.first_draw:
            raise SieveSpecError("spec.skip_min, skip_max and first_draw must be 0 with skip_mode='variable'")
        if self.direction != "forward":
            raise SieveSpecError("spec.direction must be 'forward' with skip_mode='variable'")

    def _check_offsets(self) -> None:
        if self.offset_max is None:
            return
        object.__setattr__(self, "offset_max", _as_int(self.offset_max, "spec.offset_max"))
        if not self.variable:
            raise SieveSpecError("spec.offset_max is only meaningful with skip_mode='variable'; fix: drop it")
        if not self.offset <= self.offset_max < self.offset + MAX_OFFSETS:
            raise SieveSpecError(
                f"spec.offset_max={self.offset_max} must lie in [offset={self.offset}, offset+{MAX_OFFSETS})"
            )

    @property
    def offsets(self) -> range:
        """The offsets this spec covers: offset..offset_max (variable mode), else offset alone."""
        return range(self.offset, (self.offset if self.offset_max is None else self.offset_max) + 1)

    @property
    def variable(self) -> bool:
        return self.skip_mode == "variable"

    @property
    def mapped(self) -> bool:
        """Whether the mapped (call-stream) paths of pipeline.prng.mappings sieve this spec."""
        return uses_mapped_path(self.generator, self.mapping)

    @property
    def scan_length(self) -> int:
        """Draws a variable-skip scan examines (their kernels stop at MAX_VARIABLE_DRAWS)."""
        return min(self.k, MAX_VARIABLE_DRAWS)

    @property
    def k(self) -> int:
        return len(self.residues)

    @property
    def need(self) -> int:
        return required_matches(self.k, self.threshold)

    @property
    def skips(self) -> range:
        return range(self.skip_min, self.skip_max + 1)

    def position(self, j: int, skip: int) -> int:
        return self.offset + (self.first_draw + j) * (skip + 1) + skip

    def check_order(self) -> list[int]:
        """Draw indices in the order the kernels test them (the filter uses the first few)."""
        order = list(range(self.k))
        return order[::-1] if self.direction == "reverse" else order

    def filter_length(self) -> int:
        """Draws that must contain a match: with k-need mismatches allowed, any k-need+1 draws hold one."""
        return self.k - self.need + 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["residues"] = list(self.residues)
        if self.variable:
            d["strategies"] = [list(s) for s in self.strategies]
        else:  # fixed-skip payloads stay exactly as before the variable mode existed
            del d["skip_mode"], d["strategies"]
        if self.mapping == MOD:  # and as before mappings existed
            del d["mapping"]
        if self.offset_max is None:  # and as before one spec covered several offsets
            del d["offset_max"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SieveSpec:
        if not isinstance(data, Mapping):
            raise SieveSpecError("spec must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SieveSpecError(f"spec.{unknown[0]} is not a known field; known: {', '.join(sorted(known))}")
        for name in ("generator", "residues", "threshold"):
            if name not in data:
                raise SieveSpecError(f"spec.{name} is required")
        if not isinstance(data["residues"], list | tuple):
            raise SieveSpecError("spec.residues must be a list of integers")
        return cls(**data)


def _as_int(value: Any, field: str) -> int:
    """Accept Python and numpy integers (callers pass np.int64 residues), refuse bools, floats and strings."""
    if isinstance(value, bool):
        raise SieveSpecError(f"{field}={value!r} must be an integer")
    try:
        return operator.index(value)
    except TypeError:
        raise SieveSpecError(f"{field}={value!r} must be an integer") from None


def check_range(start: int, end: int) -> tuple[int, int]:
    start, end = _as_int(start, "start"), _as_int(end, "end")
    if not 0 <= start < end <= MAX_SEED:
        raise SieveSpecError(f"seed range [{start}, {end}) must satisfy 0 <= start < end <= 2**32")
    return start, end
