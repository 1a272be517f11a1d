"""Pieces the reference steps share: sieve specs for the two window ends, chance expectations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.chance import pass_probability
from pipeline.spec import DataSpec

if TYPE_CHECKING:
    from pipeline.context import StepContext

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


def score_payloads(
    ctx: StepContext, triples: list[list[int]], history_file: str, first_index: int, param_sets: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """ "score" jobs over the survivors, split across the slots; each node reads its own ramdisk copy of
    `history_file`. Returns (payloads, parts): survivor i is in payload i % parts."""
    data = ctx.spec.data
    files = {node.name: ctx.ramdisk_path(node, history_file) for node in ctx.config.nodes}
    parts = max(1, min(len(triples), sum(n.slot_count for n in ctx.config.nodes)))
    payloads = [
        {
            "kind": "score",
            "generator": data.generator,
            "modulus": data.modulus,
            "history_files": files,
            "first_index": first_index,
            "survivors": triples[i::parts],
            "param_sets": param_sets,
        }
        for i in range(parts)
    ]
    return payloads, parts
