"""Compile the CPU kernels a run will use once, on the coordinator, before any worker starts.

Workers load them from the shared cache (pipeline.prng.kernels.cache) instead of each compiling the same
kernels at the same time on the same cores; the operator is told when compiling happens (the first run of an
installation, or after the kernels changed), so a quiet first chunk is not mistaken for a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.prng.data import DataSpec

COMPILING = "compiling kernels (first run only)"


def warm_kernels(data: DataSpec, train: list[int], say: Callable[[str], None]) -> float | None:
    """Sieve a few seeds the way the run's first chunks will (generator, mapping, skip mode) so every kernel
    they need is compiled or loaded from the cache now. Returns the seconds spent compiling (None: nothing
    was compiled, or numba is not installed)."""
    try:
        from numba.core import event
    except ImportError:
        return None
    from pipeline.prng.sieve import SieveSpec, sieve_range, variable_rows
    from pipeline.prng.windows import variable_spec, window_specs

    started: list[float] = []

    class Announce(event.Listener):  # type: ignore[misc]
        def on_start(self, _event: Any) -> None:
            if not started:
                started.append(time.monotonic())
                say(COMPILING)

        def on_end(self, _event: Any) -> None:
            pass

    window = min(8, len(train))
    lo = data.seed_range[0]
    hi = min(lo + 256, data.seed_range[1])
    with event.install_listener("numba:compile", Announce()):
        if data.variable:  # the block kernel every variable-skip job runs (pipeline.prng.windows.block_tasks)
            variable_rows(SieveSpec.from_dict(variable_spec(data, train[:window], 1.0)), lo, hi, device="cpu")
        else:
            forward, _reverse = window_specs(data, train, window, 1.0, data.offset_range[0])
            sieve_range(SieveSpec.from_dict(forward), lo, hi, device="cpu")
    return time.monotonic() - started[0] if started else None
