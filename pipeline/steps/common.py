"""What the reference steps share: their file names, the workload they run on (with the session's draws),
and score jobs."""

from __future__ import annotations

import hashlib
from typing import Any

from pipeline.prng.data import ALL_SESSIONS, History, load_history, select_session, split
from pipeline.prng.windows import mapping_field
from pipeline.prng.workload import PrngWorkload
from pipeline.step import StepContext

TRAIN_FILE = "train_history.json"
HOLDOUT_FILE = "holdout_history.json"
WINDOW_CONFIG = "optimal_window_config.json"
TRIAL_SURVIVORS = "trial_survivors.json"
BIDIRECTIONAL = "bidirectional_survivors.json"
SCORER_CONFIG = "scorer_config.json"
RANKED = "ranked_survivors.json"


def prng(ctx: StepContext[Any], session: str | None = None) -> PrngWorkload:
    """The reference workload of this run, its history, train and holdout cut to `session` (default
    data.session; a step after step 1 passes the session step 1 chose). Everything that reads the workload's
    history afterwards, the coordinator's checks of node answers included, sees that session's draws."""
    work = workload(ctx)
    use_session(work, session or work.data.session)
    return work


def workload(ctx: StepContext[Any]) -> PrngWorkload:
    """The reference workload as it is (no session change); these steps make no sense on another one."""
    if not isinstance(ctx.workload, PrngWorkload):
        raise TypeError(f"step {ctx.number:g} needs the PRNG workload; pipeline.yaml names {type(ctx.workload)}")
    return ctx.workload


def session_history(work: PrngWorkload, session: str) -> History:
    """The draws of `session` ("both": all), from the whole history file; ConfigError naming data.session."""
    full = work.history
    if full.session != ALL_SESSIONS and session != full.session:
        full = load_history(work.history_path, work.data.modulus, low=work.data.draw_low)
    return select_session(full, session)


def use_session(work: PrngWorkload, session: str) -> None:
    history = session_history(work, session)
    if history is not work.history:
        work.history = history
        work.train, work.holdout = split(history, work.data.holdout_fraction)


def study_key(work: PrngWorkload, *extra: str) -> str:
    """The workload's study key (generator and the fingerprint of the draws in use), plus the mapping when it is
    not mod and the skip mode and its strategies when variable, so searches that read the draws differently never
    share a study."""
    key = work.study_key()
    if work.data.mapping != "mod":
        key += f"-{work.data.mapping}"
    if work.data.variable:
        digest = hashlib.sha256(repr(work.data.strategies).encode()).hexdigest()[:8]
        key += f"-variable-{digest}"
    return "-".join((key, *extra))


def chosen_rows(work: PrngWorkload, survivors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Variable-skip survivors with their offset, strategy and skip sequence (over the train draws) those of the
    pair chosen among the pairs that passed the window ("passing"), on the training draws: the choice `watcher
    verify` makes, by the same function (pipeline.prng.verdict.choose). Fixed-skip survivors are returned as
    they are. Steps 2.5 and 3 both score what this returns."""
    from pipeline.prng.verdict import Envelope, choose

    data = work.data
    if not data.variable:
        return survivors
    env = Envelope.of(data)
    out = []
    for row in survivors:
        cands = [(int(o), int(i)) for o, i, _m in row.get("passing") or [[row["offset"], row["strategy"], 0]]]
        got = choose(data.generator, int(row["seed"]), work.train, data.modulus, env, cands)
        offset, strategy = got.choice
        out.append({**row, "offset": offset, "strategy": strategy, "strategy_params": list(data.strategies[strategy]),
                    "skip_sequence": got.skips})  # fmt: skip
    return out


def score_rows(work: PrngWorkload, survivors: list[dict[str, Any]]) -> list[list[int]]:
    """What a "score" job scores per survivor: [seed, skip, offset], or [seed, offset, max_misses, tolerance]
    for a variable-skip survivor (its strategy)."""
    if work.data.variable:
        return [[s["seed"], s["offset"], *work.data.strategies[s["strategy"]]] for s in survivors]
    return [[s["seed"], s["skip"], s["offset"]] for s in survivors]


def score_payloads(
    ctx: StepContext[Any],
    triples: list[list[int]],
    history_file: str,
    first_index: int,
    param_sets: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], int]:
    """ "score" jobs over the survivors, split across the slots; each node reads its own ramdisk copy of
    `history_file` (its draws less data.draw_low, as the workload holds them) and scores through data.mapping.
    Returns (payloads, parts): survivor i is in payload i % parts."""
    data = workload(ctx).data
    files = {node.name: ctx.ramdisk_path(node, history_file) for node in ctx.config.nodes}
    parts = max(1, min(len(triples), sum(n.slot_count for n in ctx.config.nodes)))
    extra: dict[str, Any] = mapping_field(data)
    if data.variable:  # the skips run on from the first train draw: the holdout's scan reads the train first
        extra["skip_mode"] = "variable"
        if first_index:
            extra["lead_files"] = {node.name: ctx.ramdisk_path(node, TRAIN_FILE) for node in ctx.config.nodes}
    payloads = [
        {
            **extra,
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
