"""Pieces the reference steps share: sieve specs for the two window ends, chance expectations."""

from __future__ import annotations

from typing import Any

from pipeline.chance import pass_probability
from pipeline.spec import DataSpec

TRAIN_FILE = "train_history.json"
HOLDOUT_FILE = "holdout_history.json"
WINDOW_CONFIG = "optimal_window_config.json"
TRIAL_SURVIVORS = "trial_survivors.json"
BIDIRECTIONAL = "bidirectional_survivors.json"
SCORER_CONFIG = "scorer_config.json"
RANKED = "ranked_survivors.json"


def window_specs(data: DataSpec, train: list[int], window: int, threshold: float, offset: int) -> tuple[dict, dict]:
    """Forward window = the oldest `window` train draws; reverse = the newest, checked newest-first.
    Two independent windows: a random seed must pass both, so chance survivors square away."""
    common: dict[str, Any] = {
        "generator": data.generator,
        "modulus": data.modulus,
        "offset": offset,
        "skip_min": data.skip_range[0],
        "skip_max": data.skip_range[1],
        "threshold": threshold,
    }
    forward = {**common, "residues": train[:window], "first_draw": 0, "direction": "forward"}
    reverse = {
        **common,
        "residues": train[len(train) - window :],
        "first_draw": len(train) - window,
        "direction": "reverse",
    }
    return forward, reverse


def offsets(data: DataSpec) -> range:
    return range(data.offset_range[0], data.offset_range[1] + 1)


def expected_bidirectional(data: DataSpec, seeds: int, window: int, threshold: float) -> float:
    n_skips = data.skip_range[1] - data.skip_range[0] + 1
    p = pass_probability(window, threshold, data.modulus, n_skips)
    return seeds * len(offsets(data)) * p * p
