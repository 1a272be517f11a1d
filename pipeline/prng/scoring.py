"""Scoring survivors against a draw history (the worker job "score" and the scorer's chance baseline).

The scorer is deliberately small and tunable (step 2.5 tunes it, step 3 applies it):
- skip_tolerance: also accept a match at skip±t (real generators are sometimes advanced irregularly);
- recency_weight: how much more the newest draws count than the oldest;
- partial_weight: credit for matching the last two digits when the full draw does not match.
A score is compared with the score a random seed would get under the same parameters (the chance
baseline), so a looser scorer does not look better just because everything scores higher.

Variable-skip survivors (`"skip_mode": "variable"` in the job, rows [seed, offset, max_misses, tolerance]) are
scored with the skips their strategy finds: the scan the sieve ran over its window (pipeline.prng.sieve.variable)
carried on through the whole history (`lead_file`/`lead_files`: the draws before `first_index`, scanned
first so the scored draws sit where the skips put them), with no MAX_VARIABLE_DRAWS cap. skip_tolerance plays
no part there (the strategy's tolerance is the search); recency and partial credit apply as in fixed mode.

With a mapping (`"mapping"` in the job, pipeline.prng.mappings) the stream scored is the seed's library calls
(each already a value in [0, modulus)) and every position, skip_tolerance's included, counts calls. Every
mapping draws uniformly, so the chance baseline is the same 1/modulus per candidate.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

SCORER_DEFAULTS = {"skip_tolerance": 0, "recency_weight": 0.0, "partial_weight": 0.0}


def positions(offset: int, index: int, skip: int, tolerance: int) -> list[int]:
    """Output positions that may hold draw number `index` (0-based in the whole history)."""
    return [offset + index * (s + 1) + s for s in range(max(0, skip - tolerance), skip + tolerance + 1)]


def score_seed(
    outputs: Sequence[int],
    draws: Sequence[int],
    first_index: int,
    offset: int,
    skip: int,
    params: Mapping[str, float],
    modulus: int = 1000,
) -> tuple[float, float]:
    """(weighted score in [0, 1], exact-match fraction at the seed's own skip) over `draws`."""
    tol = int(params.get("skip_tolerance", 0))
    recency = float(params.get("recency_weight", 0.0))
    partial = float(params.get("partial_weight", 0.0))
    total = weight_sum = 0.0
    exact_hits = 0
    n = len(draws)
    for j, draw in enumerate(draws):
        index = first_index + j
        weight = 1.0 + recency * (j / (n - 1) if n > 1 else 1.0)
        weight_sum += weight
        own = offset + index * (skip + 1) + skip
        if outputs[own] % modulus == draw:
            exact_hits += 1
            total += weight
            continue
        cands = positions(offset, index, skip, tol)
        if any(outputs[p] % modulus == draw for p in cands):
            total += weight
        elif partial and any(outputs[p] % 100 == draw % 100 for p in cands):
            total += weight * partial
    return (total / weight_sum if weight_sum else 0.0), (exact_hits / n if n else 0.0)


def chance_baseline(params: Mapping[str, float], modulus: int = 1000) -> float:
    """Expected score of a random seed: what a scorer gives away for free."""
    cands = 2 * int(params.get("skip_tolerance", 0)) + 1
    p_exact = 1 - (1 - 1 / modulus) ** cands
    p_low = 1 - (1 - 1 / 100) ** cands
    return p_exact + float(params.get("partial_weight", 0.0)) * max(p_low - p_exact, 0.0)


def variable_scan(
    generator: str, seed: int, offset: int, misses: int, tolerance: int, draws: Sequence[int], modulus: int = 1000
) -> list[tuple[int, bool, bool]]:
    """Per draw (skip, exact match, a candidate matched mod 100) of one strategy's scan over `draws`: the rules
    of pipeline.prng.sieve.variable.scan_strategy (first, smallest matching skip; the family's miss rule; stop
    after the misses in a row), over every draw. Draws after the scan gave up: (-1, False, False)."""
    from pipeline.prng.generators.reference import REFERENCE
    from pipeline.prng.sieve.variable import EXPECTED_START, miss_advance, rule_for

    rule = rule_for(generator)
    add_hi, extra = miss_advance(rule)
    stream = REFERENCE[generator](seed)
    values: list[int] = []
    out: list[tuple[int, bool, bool]] = []
    pos, e, run = offset, EXPECTED_START, 0
    for draw in draws:
        if run >= (misses if rule.adaptive else misses + 1):
            out.append((-1, False, False))
            continue
        lo, hi = (e - tolerance if e > tolerance else 0), e + tolerance
        while len(values) < pos + hi + 1:
            values.append(next(stream))
        found = next((s for s in range(lo, hi + 1) if values[pos + s] % modulus == draw), None)
        if found is not None:
            out.append((found, True, True))
            run, pos = 0, pos + found + 1
            if rule.adaptive:
                e = found
            continue
        low = any(values[pos + s] % 100 == draw % 100 for s in range(lo, hi + 1))
        out.append((e if rule.adaptive else 0, False, low))
        run += 1
        pos += (hi if add_hi else 0) + extra
    return out


def score_variable(
    generator: str,
    seed: int,
    offset: int,
    strategy: Sequence[int],
    lead: Sequence[int],
    draws: Sequence[int],
    params: Mapping[str, float],
    modulus: int = 1000,
) -> tuple[float, float]:
    """(weighted score, exact-match fraction) of `draws` under one strategy, after scanning `lead` first."""
    misses, tolerance = int(strategy[0]), int(strategy[1])
    scan = variable_scan(generator, seed, offset, misses, tolerance, [*lead, *draws], modulus)[len(lead) :]
    recency = float(params.get("recency_weight", 0.0))
    partial = float(params.get("partial_weight", 0.0))
    total = weight_sum = 0.0
    n = len(draws)
    for j, (_skip, exact, low) in enumerate(scan):
        weight = 1.0 + recency * (j / (n - 1) if n > 1 else 1.0)
        weight_sum += weight
        total += weight if exact else (weight * partial if low else 0.0)
    hits = sum(1 for _s, exact, _low in scan if exact)
    return (total / weight_sum if weight_sum else 0.0), (hits / n if n else 0.0)


def variable_chance_baseline(params: Mapping[str, float], tolerance: int, modulus: int = 1000) -> float:
    """Expected variable-skip score of a random seed per draw: 2*tolerance+1 chances (an upper bound)."""
    return chance_baseline({**params, "skip_tolerance": tolerance}, modulus)


def _load_draws(path: str) -> list[int]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return [int(e["draw"]) if isinstance(e, dict) else int(e) for e in data]


def history_path(job: dict[str, Any], key: str = "history") -> str:
    """The history file this worker reads: `history_file`, or this node's entry of `history_files`
    (node -> its ramdisk copy; the scheduler names the node in WATCHER_SLOT=node:gpu). key="lead": the
    draws before first_index (`lead_file` / `lead_files`) a variable-skip score scans first."""
    if f"{key}_file" in job:
        return str(job[f"{key}_file"])
    node = os.environ.get("WATCHER_SLOT", "").rpartition(":")[0]
    files = job[f"{key}_files"]
    if node not in files:
        raise KeyError(f"{key}_files[{node or 'WATCHER_SLOT unset'}]")
    return str(files[node])


def score_job(job: dict[str, Any]) -> dict[str, Any]:
    """Worker job "score": every survivor under every parameter set, on a history file (the ramdisk copy).
    "mapping" (absent for mod): the draws are that library call's values, positions count calls."""
    from pipeline.prng.mappings.library import MOD, call_stream

    generator = str(job["generator"])
    modulus = int(job.get("modulus", 1000))
    draws = _load_draws(history_path(job))
    first_index = int(job.get("first_index", 0))
    param_sets = job.get("param_sets") or [SCORER_DEFAULTS]
    survivors = job["survivors"]
    max_tol = max(int(p.get("skip_tolerance", 0)) for p in param_sets)
    scores: list[list[float]] = [[] for _ in param_sets]
    exact: list[float] = []
    if job.get("skip_mode") == "variable":
        lead = _load_draws(history_path(job, "lead")) if first_index else []
        if len(lead) != first_index:
            raise KeyError(f"lead_file (holds {len(lead)} draws, first_index is {first_index})")
        for seed, offset, misses, tolerance in survivors:
            for i, params in enumerate(param_sets):
                value, hits = score_variable(
                    generator, int(seed), int(offset), (misses, tolerance), lead, draws, params, modulus
                )
                scores[i].append(round(value, 6))
                if i == 0:
                    exact.append(round(hits, 6))
        return {"scores": scores, "exact": exact, "draws": len(draws), "survivor_count": len(survivors)}
    mapping = str(job.get("mapping", MOD))
    for seed, skip, offset in survivors:
        last = offset + (first_index + len(draws)) * (skip + max_tol + 1) + skip + max_tol + 1
        outputs = call_stream(generator, mapping, int(seed), last, modulus)
        for i, params in enumerate(param_sets):
            value, hits = score_seed(outputs, draws, first_index, offset, skip, params, modulus)
            scores[i].append(round(value, 6))
            if i == 0:
                exact.append(round(hits, 6))
    return {"scores": scores, "exact": exact, "draws": len(draws), "survivor_count": len(survivors)}


CONFIRM_TOP = 25  # ranked variable-skip survivors the coordinator rescores before a verdict


def confirm_variable_ranking(
    generator: str,
    modulus: int,
    strategies: Sequence[Sequence[int]],
    draws: Sequence[int],
    n_train: int,
    ranked: list[dict[str, Any]],
    params: Mapping[str, float],
) -> list[dict[str, Any]]:
    """The top of a variable-skip ranking rescored on the coordinator from its own copy of the draws (as
    pipeline.prng.answers.confirm_ranking does for fixed skips): `confirmed` is False where a node's score was
    wrong and has been corrected; the ranking is redone."""
    train, holdout = list(draws[:n_train]), list(draws[n_train:])
    for row in ranked[:CONFIRM_TOP]:
        seed, offset, strategy = int(row["seed"]), int(row["offset"]), strategies[int(row["strategy"])]
        t_score, t_exact = score_variable(generator, seed, offset, strategy, [], train, params, modulus)
        h_score, h_exact = score_variable(generator, seed, offset, strategy, train, holdout, params, modulus)
        local = {"train_score": round(t_score, 6), "train_match": round(t_exact, 6),
                 "holdout_score": round(h_score, 6), "holdout_match": round(h_exact, 6)}  # fmt: skip
        row["confirmed"] = all(abs(float(row[k]) - v) <= 1e-5 for k, v in local.items())
        row.update(local)
    ranked.sort(key=lambda r: (-r["train_score"], -r["holdout_match"], r["seed"]))
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    return ranked


def log10_binomial_tail(n: int, hits: int, p: float) -> float:
    """log10 P(Binomial(n, p) >= hits), in log space (n may be thousands of draws)."""
    if hits <= 0:
        return 0.0
    if hits > n or p <= 0:
        return -math.inf
    if p >= 1:
        return 0.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(hits, n + 1)
    ]
    top = max(logs)
    return min(0.0, (top + math.log(sum(math.exp(v - top) for v in logs))) / math.log(10))
