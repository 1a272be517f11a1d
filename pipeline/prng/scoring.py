"""Scoring survivors against a draw history (the worker job "score" and the scorer's chance baseline).

The scorer is deliberately small and tunable (step 2.5 tunes it, step 3 applies it):
- skip_tolerance: also accept a match at skip±t (real generators are sometimes advanced irregularly);
- recency_weight: how much more the newest draws count than the oldest;
- partial_weight: credit for matching the last two digits when the full draw does not match.
A score is compared with the score a random seed would get under the same parameters (the chance
baseline), so a looser scorer does not look better just because everything scores higher.
"""

from __future__ import annotations

import json
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


def _load_draws(path: str) -> list[int]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return [int(e["draw"]) if isinstance(e, dict) else int(e) for e in data]


def history_path(job: dict[str, Any]) -> str:
    """The history file this worker reads: `history_file`, or this node's entry of `history_files`
    (node -> its ramdisk copy; the scheduler names the node in WATCHER_SLOT=node:gpu)."""
    if "history_file" in job:
        return str(job["history_file"])
    node = os.environ.get("WATCHER_SLOT", "").rpartition(":")[0]
    files = job["history_files"]
    if node not in files:
        raise KeyError(f"history_files[{node or 'WATCHER_SLOT unset'}]")
    return str(files[node])


def score_job(job: dict[str, Any]) -> dict[str, Any]:
    """Worker job "score": every survivor under every parameter set, on a history file (the ramdisk copy)."""
    from pipeline.prng.sieve import generate

    generator = str(job["generator"])
    modulus = int(job.get("modulus", 1000))
    draws = _load_draws(history_path(job))
    first_index = int(job.get("first_index", 0))
    param_sets = job.get("param_sets") or [SCORER_DEFAULTS]
    survivors = job["survivors"]
    max_tol = max(int(p.get("skip_tolerance", 0)) for p in param_sets)
    scores: list[list[float]] = [[] for _ in param_sets]
    exact: list[float] = []
    for seed, skip, offset in survivors:
        last = offset + (first_index + len(draws)) * (skip + max_tol + 1) + skip + max_tol + 1
        outputs = generate(generator, int(seed), last)
        for i, params in enumerate(param_sets):
            value, hits = score_seed(outputs, draws, first_index, offset, skip, params, modulus)
            scores[i].append(round(value, 6))
            if i == 0:
                exact.append(round(hits, 6))
    return {"scores": scores, "exact": exact, "draws": len(draws), "survivor_count": len(survivors)}
