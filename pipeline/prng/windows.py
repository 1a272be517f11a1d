"""Window sieves as the reference steps run them: the two ends of the train history, the tasks that
sieve a seed block at every offset, the worker job that runs them, and merging what comes back.

Steps 1 and 2 both build their jobs with `sieve_payloads` and read them back with `merge_survivors`, so
the two steps cannot drift apart in what a "bidirectional survivor" is.

With `data.mapping` other than mod every spec carries the mapping: the draws are library calls (e.g. Java's
nextInt(n)), positions count calls, and the sieve follows the library's loop per seed (pipeline.prng.mappings).
The chance expectations are unchanged: every mapping draws uniformly, 1/modulus per draw.

With `data.skip_mode: variable` there is no fixed position for the newest draws (it depends on every skip
before them), so the sieve tests one window: the oldest `window` train draws from each offset, each draw's
skip searched with `data.strategies` (the operators' hybrid semantics, pipeline.prng.sieve.variable). One task
sieves a seed block at every offset under every strategy ({"variable": spec with offset..offset_max, tag
[tag, "variable"]}: one residue stream per seed serves them all, pipeline.prng.sieve.rows), and answers every
passing (offset, strategy) as a row [seed, offset, strategy, matches]. A seed keeps them all ("passing"); the
scoring steps choose among them on the training draws (pipeline.prng.verdict.choose). The chance expectation is
that of one variable window, summed over every offset and strategy (pipeline.prng.sieve.variable's honest
per-draw 2*tolerance+1 chances): each (offset, strategy) is a choice a random seed may pass by luck.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.prng.chance import pass_probability
from pipeline.prng.data import DataSpec


def window_specs(data: DataSpec, train: Sequence[int], window: int, threshold: float, offset: int) -> tuple[dict, dict]:
    """Forward window = the oldest `window` train draws; reverse = the newest, checked newest-first.
    Two independent windows: a random seed must pass both, so chance survivors square away (fixed skips)."""
    common: dict[str, Any] = {
        "generator": data.generator,
        "modulus": data.modulus,
        "offset": offset,
        "skip_min": data.skip_range[0],
        "skip_max": data.skip_range[1],
        "threshold": threshold,
        **mapping_field(data),
    }
    forward = {**common, "residues": list(train[:window]), "first_draw": 0, "direction": "forward"}
    reverse = {
        **common,
        "residues": list(train[len(train) - window :]),
        "first_draw": len(train) - window,
        "direction": "reverse",
    }
    return forward, reverse


def mapping_field(data: DataSpec) -> dict[str, str]:
    """{"mapping": name} for a spec or job of this data set; nothing for `mod`, so those payloads (and the chunk
    ids and stored results derived from them) stay exactly what they were before mappings existed."""
    return {} if data.mapping == "mod" else {"mapping": data.mapping}


def variable_spec(data: DataSpec, residues: Sequence[int], threshold: float) -> dict:
    """The variable-skip sieve spec of a block task: every offset of data.offset_range, every strategy."""
    lo, hi = data.offset_range
    return {
        "generator": data.generator,
        "modulus": data.modulus,
        "offset": lo,
        **({"offset_max": hi} if hi > lo else {}),
        "threshold": threshold,
        "residues": list(residues),
        "skip_mode": "variable",
        "strategies": [list(s) for s in data.strategies],
    }


VARIABLE_TAG = "variable"  # the second element of a variable block task's tag


def offsets(data: DataSpec) -> range:
    return range(data.offset_range[0], data.offset_range[1] + 1)


def variable_pass_probability(data: DataSpec, window: int, threshold: float) -> float:
    """P(a random seed passes the window at one offset under some strategy): the sum over strategies of
    pipeline.prng.sieve.variable's per-strategy chance (each draw 2*tolerance+1 chances, the give-up rule)."""
    from pipeline.prng.chance import required_matches
    from pipeline.prng.sieve.variable import rule_for, strategy_pass_probability

    need = required_matches(window, threshold)
    adaptive = rule_for(data.generator).adaptive
    total = sum(strategy_pass_probability(window, need, data.modulus, m, t, adaptive) for m, t in data.strategies)
    return min(1.0, total)


def expected_bidirectional(data: DataSpec, seeds: int, window: int, threshold: float) -> float:
    """Seeds expected to pass both windows by chance, over every offset and skip of the envelope.
    Variable mode: seeds expected to pass its one window at some offset under some strategy."""
    if data.variable:
        return seeds * len(offsets(data)) * variable_pass_probability(data, window, threshold)
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
    """One task per offset for the seed block [start, end); each task's tag is [tag, offset]. Variable mode:
    one task for the block, every offset and strategy, tagged [tag, "variable"]."""
    if data.variable:
        spec = variable_spec(data, train[:window], threshold)
        return [{"variable": spec, "start": start, "end": end, "tag": [tag, VARIABLE_TAG]}]
    tasks = []
    for offset in offsets(data):
        forward, reverse = window_specs(data, train, window, threshold, offset)
        tasks.append({"forward": forward, "reverse": reverse, "start": start, "end": end, "tag": [tag, offset]})
    return tasks


def tasks_per_block(data: DataSpec) -> int:
    return 1 if data.variable else len(offsets(data))


def sieve_payloads(tasks: Sequence[dict[str, Any]], tasks_per_job: int) -> list[dict[str, Any]]:
    """ "window_batch" jobs of at most `tasks_per_job` tasks each (one process start serves many tasks)."""
    step = max(1, tasks_per_job)
    return [{"kind": "window_batch", "tasks": list(tasks[i : i + step])} for i in range(0, len(tasks), step)]


def merge_survivors(results: Iterable[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Per block tag: {"forward": forward-survivor count, "survivors": {seed: row}}; a seed found at several
    offsets or skips keeps its first row (offset order), as a later verification would. A variable-skip seed keeps
    every passing (offset, strategy) in "passing" ([offset, strategy, matches], in that order) and, as its row's
    offset and strategy, the first offset and there the first strategy with the most matches (what the operators'
    kernels report); the scoring steps choose among "passing" on the training draws."""
    merged: dict[Any, dict[str, Any]] = {}
    for result in results:
        for task in result["tasks"]:
            tag, offset, *strategy = task["tag"]
            key = tuple(tag) if isinstance(tag, list) else tag
            entry = merged.setdefault(key, {"forward": 0, "survivors": {}})
            entry["forward"] += task["forward_count"]
            if offset == VARIABLE_TAG:
                for seed, row_offset, index, matches in task["survivors"]:
                    _add_variable(entry["survivors"], seed, row_offset, index, matches)
                continue
            for seed, skip, fm, rm in task["survivors"]:
                if strategy:  # a one-(offset, strategy) task of an earlier version, stored before an upgrade
                    _add_variable(entry["survivors"], seed, offset, strategy[0], fm)
                    continue
                entry["survivors"].setdefault(
                    seed, {"seed": seed, "skip": skip, "offset": offset, "forward_matches": fm, "reverse_matches": rm}
                )
    return merged


def _add_variable(survivors: dict[int, dict[str, Any]], seed: int, offset: int, strategy: int, matches: int) -> None:
    row = survivors.setdefault(seed, {"seed": seed, "skip_mode": "variable", "passing": []})
    row["passing"] = sorted([*row["passing"], [offset, strategy, matches]])
    first = min(row["passing"], key=lambda p: (p[0], -p[2], p[1]))
    row.update(offset=first[0], strategy=first[1], forward_matches=first[2], reverse_matches=first[2])


def with_skip_sequences(data: DataSpec, train: Sequence[int], window: int, rows: Iterable[dict[str, Any]]) -> None:
    """Add each variable-skip row's strategy ([max_misses, tolerance]) and skip sequence over the window,
    computed here on the coordinator (the reference scan, pipeline.prng.sieve.variable), not taken from a node."""
    from pipeline.prng.sieve.spec import SieveSpec
    from pipeline.prng.sieve.variable import reference_variable_score

    for row in rows:
        if row.get("skip_mode") != "variable":
            continue
        one = {**variable_spec(data, train[:window], 1.0 / window), "offset": row["offset"]}
        one.pop("offset_max", None)
        spec = SieveSpec.from_dict({**one, "strategies": [list(data.strategies[row["strategy"]])]})
        hit = reference_variable_score(spec, int(row["seed"]))
        row["strategy_params"] = list(data.strategies[row["strategy"]])
        row["skip_sequence"] = hit[2] if hit is not None else []


def window_batch_job(job: dict[str, Any]) -> dict[str, Any]:
    """Worker job "window_batch": forward sieves over seed blocks, each followed by the reverse check of
    its survivors, so one process start serves many trials (starts cost more than small sieves). A variable
    block task answers its rows ([seed, offset, strategy, matches]) as its survivors."""
    from pipeline.prng.sieve import SieveSpec, sieve_range, variable_rows, verify_seeds
    from pipeline.worker import report_progress

    out = []
    tested = 0
    for task in job["tasks"]:
        start, end = int(task["start"]), int(task["end"])
        if "variable" in task:
            rows = variable_rows(SieveSpec.from_dict(task["variable"]), start, end)
            tested += rows.seeds_tested
            report_progress(tested)
            found = [list(r) for r in rows.rows()]
            out.append({"tag": task.get("tag"), "forward_count": len(found), "seeds_tested": rows.seeds_tested,
                        "survivors": found})  # fmt: skip
            continue
        forward = SieveSpec.from_dict(task["forward"])
        reverse = SieveSpec.from_dict(task["reverse"])
        fwd = sieve_range(forward, start, end)
        tested += fwd.seeds_tested
        report_progress(tested)  # heartbeats carry it: progress moves within a chunk
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
