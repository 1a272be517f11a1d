"""Window sieves as the reference steps run them: the two ends of the train history, the tasks that
sieve a seed block at every offset, the worker job that runs them, and merging what comes back.

Steps 1 and 2 both build their jobs with `sieve_payloads` and read them back with `merge_survivors`, so
the two steps cannot drift apart in what a "bidirectional survivor" is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.prng.chance import pass_probability
from pipeline.prng.data import DataSpec


def window_specs(data: DataSpec, train: Sequence[int], window: int, threshold: float, offset: int) -> tuple[dict, dict]:
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
    forward = {**common, "residues": list(train[:window]), "first_draw": 0, "direction": "forward"}
    reverse = {
        **common,
        "residues": list(train[len(train) - window :]),
        "first_draw": len(train) - window,
        "direction": "reverse",
    }
    return forward, reverse


def offsets(data: DataSpec) -> range:
    return range(data.offset_range[0], data.offset_range[1] + 1)


def expected_bidirectional(data: DataSpec, seeds: int, window: int, threshold: float) -> float:
    """Seeds expected to pass both windows by chance, over every offset and skip of the envelope."""
    n_skips = data.skip_range[1] - data.skip_range[0] + 1
    p = pass_probability(window, threshold, data.modulus, n_skips)
    return seeds * len(offsets(data)) * p * p


PRIOR_EXPECTATION = 0.01  # chance survivors a window chosen before seeing the data may let through


def prior_window(data: DataSpec, n_train: int) -> tuple[int, float]:
    """The window chosen before any data is seen: the smallest window, at threshold 1.0, whose chance
    expectation over the whole range, every offset and skip, is below PRIOR_EXPECTATION. It is what step 2
    uses when step 1's sample found nothing to learn from. Returns (window, chance expectation)."""
    span = data.seed_range[1] - data.seed_range[0]
    for window in range(1, n_train + 1):
        expected = expected_bidirectional(data, span, window, 1.0)
        if expected < PRIOR_EXPECTATION:
            return window, expected
    return n_train, expected_bidirectional(data, span, n_train, 1.0)


def block_tasks(
    data: DataSpec, train: Sequence[int], window: int, threshold: float, start: int, end: int, tag: Any = None
) -> list[dict[str, Any]]:
    """One task per offset for the seed block [start, end); each task's tag is [tag, offset]."""
    tasks = []
    for offset in offsets(data):
        forward, reverse = window_specs(data, train, window, threshold, offset)
        tasks.append({"forward": forward, "reverse": reverse, "start": start, "end": end, "tag": [tag, offset]})
    return tasks


def sieve_payloads(tasks: Sequence[dict[str, Any]], tasks_per_job: int) -> list[dict[str, Any]]:
    """ "window_batch" jobs of at most `tasks_per_job` tasks each (one process start serves many tasks)."""
    step = max(1, tasks_per_job)
    return [{"kind": "window_batch", "tasks": list(tasks[i : i + step])} for i in range(0, len(tasks), step)]


def merge_survivors(results: Iterable[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Per block tag: {"forward": forward-survivor count, "survivors": {seed: row}}; a seed found at several
    offsets or skips keeps its first row (offset order), as a later verification would."""
    merged: dict[Any, dict[str, Any]] = {}
    for result in results:
        for task in result["tasks"]:
            tag, offset = task["tag"]
            key = tuple(tag) if isinstance(tag, list) else tag
            entry = merged.setdefault(key, {"forward": 0, "survivors": {}})
            entry["forward"] += task["forward_count"]
            for seed, skip, fm, rm in task["survivors"]:
                entry["survivors"].setdefault(
                    seed,
                    {"seed": seed, "skip": skip, "offset": offset, "forward_matches": fm, "reverse_matches": rm},
                )
    return merged


def window_batch_job(job: dict[str, Any]) -> dict[str, Any]:
    """Worker job "window_batch": forward sieves over seed blocks, each followed by the reverse check of
    its survivors, so one process start serves many trials (starts cost more than small sieves)."""
    from pipeline.prng.sieve import SieveSpec, sieve_range, verify_seeds

    out = []
    tested = 0
    for task in job["tasks"]:
        forward = SieveSpec.from_dict(task["forward"])
        reverse = SieveSpec.from_dict(task["reverse"])
        fwd = sieve_range(forward, int(task["start"]), int(task["end"]))
        tested += fwd.seeds_tested
        both: list[list[int]] = []
        if len(fwd):
            rev = verify_seeds(reverse, fwd.seeds)
            rev_by_seed = {s: (k, m) for s, k, m in rev.survivors()}
            for seed, skip, matches in fwd.survivors():
                if seed in rev_by_seed:
                    both.append([seed, skip, matches, rev_by_seed[seed][1]])
        out.append(
            {"tag": task.get("tag"), "forward_count": len(fwd), "seeds_tested": fwd.seeds_tested, "survivors": both}
        )
    return {"tasks": out, "seeds_tested": tested}
