"""What the reference steps share: their file names, the workload they run on, and score jobs."""

from __future__ import annotations

from typing import Any

from pipeline.prng.workload import PrngWorkload
from pipeline.step import StepContext

TRAIN_FILE = "train_history.json"
HOLDOUT_FILE = "holdout_history.json"
WINDOW_CONFIG = "optimal_window_config.json"
TRIAL_SURVIVORS = "trial_survivors.json"
BIDIRECTIONAL = "bidirectional_survivors.json"
SCORER_CONFIG = "scorer_config.json"
RANKED = "ranked_survivors.json"


def prng(ctx: StepContext[Any]) -> PrngWorkload:
    """The reference workload of this run; these steps make no sense on another one."""
    if not isinstance(ctx.workload, PrngWorkload):
        raise TypeError(f"step {ctx.number:g} needs the PRNG workload; pipeline.yaml names {type(ctx.workload)}")
    return ctx.workload


def score_payloads(
    ctx: StepContext[Any],
    triples: list[list[int]],
    history_file: str,
    first_index: int,
    param_sets: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], int]:
    """ "score" jobs over the survivors, split across the slots; each node reads its own ramdisk copy of
    `history_file`. Returns (payloads, parts): survivor i is in payload i % parts."""
    data = prng(ctx).data
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
