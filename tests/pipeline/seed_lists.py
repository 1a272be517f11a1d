"""Explicit seed lists for verify_seeds tests: scattered singletons and one run, so the numba path (one range call per
run of consecutive seeds) meets both shapes."""

from __future__ import annotations

import numpy as np


def scattered(start: int, end: int) -> np.ndarray:
    """Every other seed of the first half of [start, end), then the whole second half."""
    mid = start + (end - start) // 2
    return np.concatenate([np.arange(start, mid, 2), np.arange(mid, end)]).astype(np.int64)
