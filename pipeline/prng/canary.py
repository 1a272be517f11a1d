"""Known answers planted in chunks, so a GPU that computes garbage without crashing is caught on its
first chunk rather than trusted.

A window_batch chunk gets one extra task: a small block of seeds holding a canary seed the coordinator
chose, with forward and reverse windows made from that seed's own outputs (same generator, offset, skip
and window sizes as the chunk's first task). A correct worker must report the canary seed; a worker
whose generator, comparison or reporting is broken does not. A score chunk gets one extra survivor
whose score the coordinator computes itself. The canary is derived from the chunk's own payload, so
the same chunk always carries the same canary (its chunk id, and so resume, are unaffected), and it
sits at a position that depends on the payload, not always first or last. With a mapping (the chunk's specs
name one) the canary's windows are made from that seed's library calls, as a history of its draws would be. A
variable-skip block task's canary is a window drawn from the seed's own stream at the task's first offset with the
skips its first strategy's scan follows (pipeline.prng.synth.variable_draws), so a correct worker reports a row of
that seed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipeline.prng.mappings.library import MOD, call_stream

CANARY_BLOCK = 64  # seeds in the canary's block: the planted seed and its neighbours
CANARY_KEY = "canary"  # marks the planted task on the coordinator's side only


def digest(payload: dict[str, Any]) -> int:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _residues(spec: dict[str, Any], outputs: list[int], skip: int) -> list[int]:
    """The window's draws from a seed's call stream (raw outputs for mod, which are reduced here)."""
    offset, first, modulus = int(spec["offset"]), int(spec.get("first_draw", 0)), int(spec["modulus"])
    return [outputs[offset + (first + j) * (skip + 1) + skip] % modulus for j in range(len(spec["residues"]))]


Planted = dict[str, Any]  # what only the coordinator knows: {"seed", "tag"} or {"index"}


def plant(payload: dict[str, Any]) -> tuple[dict[str, Any], Planted | None]:
    """The payload with its canary added, and what was planted (kept by the coordinator, never sent):
    window_batch and score jobs; other kinds come back unchanged with None."""
    kind = payload.get("kind")
    if kind == "window_batch" and payload.get("tasks"):
        return _plant_window(payload)
    if kind == "score" and payload.get("survivors") and all(len(s) == 3 for s in payload["survivors"]):
        return _plant_score(payload)
    return payload, None


def _plant_window(payload: dict[str, Any]) -> tuple[dict[str, Any], Planted | None]:
    first = payload["tasks"][0]
    if "variable" in first:
        return _plant_variable(payload, first["variable"])
    forward, reverse = first["forward"], first["reverse"]
    if forward.get("skip_mode", "fixed") != "fixed":
        return payload, None  # the canary's windows assume a fixed skip
    key = digest(payload)
    seed = key & 0xFFFFFFFF
    skip = int(forward.get("skip_min", 0))
    n = max(
        int(s["offset"]) + (int(s.get("first_draw", 0)) + len(s["residues"])) * (skip + 1) for s in (forward, reverse)
    )
    outputs = call_stream(forward["generator"], forward.get("mapping", MOD), seed, n, int(forward["modulus"]))
    start = min(seed - seed % CANARY_BLOCK, (1 << 32) - CANARY_BLOCK)
    tag = [(key >> 32) & 0xFFFFFF, forward["offset"]]
    task = {
        "forward": {**forward, "residues": _residues(forward, outputs, skip)},
        "reverse": {**reverse, "residues": _residues(reverse, outputs, skip)},
        "start": start,
        "end": start + CANARY_BLOCK,
        "tag": tag,
    }
    tasks = list(payload["tasks"])
    tasks.insert((key >> 56) % (len(tasks) + 1), task)
    return {**payload, "tasks": tasks}, {"seed": seed, "tag": tag}


def _plant_variable(payload: dict[str, Any], spec: dict[str, Any]) -> tuple[dict[str, Any], Planted | None]:
    from pipeline.prng.sieve.spec import PRNG_CLUSTER_STRATEGIES
    from pipeline.prng.synth import variable_draws

    key = digest(payload)
    seed = key & 0xFFFFFFFF
    strategy = (spec.get("strategies") or PRNG_CLUSTER_STRATEGIES)[0]
    residues, _skips = variable_draws(spec["generator"], seed, len(spec["residues"]), offset=int(spec["offset"]),
                                      strategy=strategy, modulus=int(spec["modulus"]), rng_seed=key)  # fmt: skip
    start = min(seed - seed % CANARY_BLOCK, (1 << 32) - CANARY_BLOCK)
    tag = [(key >> 32) & 0xFFFFFF, "variable"]
    task = {"variable": {**spec, "residues": residues}, "start": start, "end": start + CANARY_BLOCK, "tag": tag}
    tasks = list(payload["tasks"])
    tasks.insert((key >> 56) % (len(tasks) + 1), task)
    return {**payload, "tasks": tasks}, {"seed": seed, "tag": tag}


def _plant_score(payload: dict[str, Any]) -> tuple[dict[str, Any], Planted | None]:
    key = digest(payload)
    survivors = list(payload["survivors"])
    _, skip, offset = survivors[0]
    at = (key >> 56) % (len(survivors) + 1)
    survivors.insert(at, [key & 0xFFFFFFFF, skip, offset])
    return {**payload, "survivors": survivors}, {"index": at}


def is_canary(task: dict[str, Any]) -> bool:
    return CANARY_KEY in task


def seed_of(task: dict[str, Any]) -> int:
    return int(task[CANARY_KEY])


def mark_tasks(payload: dict[str, Any], planted: Planted | None) -> list[dict[str, Any]]:
    """The payload's tasks with the planted one marked (coordinator side only: the worker got them unmarked)."""
    tasks = list(payload["tasks"])
    if not planted or "tag" not in planted:
        return tasks
    return [{**t, CANARY_KEY: planted["seed"]} if t.get("tag") == planted["tag"] else t for t in tasks]


def is_canary_survivor(planted: Planted | None, index: int) -> bool:
    return planted is not None and planted.get("index") == index


def score_probes(payload: dict[str, Any], planted: Planted | None, count: int, sample: int) -> list[int]:
    """Which survivors' scores the coordinator recomputes: the canary, and a sample chosen by the payload."""
    if count == 0:
        return []
    key = digest(payload)
    picks = {(key >> (8 * k)) % count for k in range(min(sample, count))}
    if planted and "index" in planted:
        picks.add(int(planted["index"]))
    return sorted(picks)
