"""What a worker may answer, and what the coordinator checks before it believes it.

A rig is a machine we do not fully control: its GPU can compute garbage without crashing, its software
can be stale or tampered with. So every answer to a reference-workload job is
1. parsed against the schema of its job kind (types and counts; values inside the chunk's assigned seed
   range and skip envelope; tags exactly those that were sent) -> AnswerRejected("invalid");
2. recomputed where it makes a claim: every survivor must pass both of its windows again on the
   coordinator, with the same skip and match counts (through the job's mapping, if it names one: the draws are
   library calls); a variable-skip block task's rows [seed, offset, strategy, matches] must be, seed by seed,
   exactly the rows the coordinator computes for the seeds claimed; sampled scores must equal the coordinator's
   own -> AnswerRejected("unverified");
3. checked against the canary planted in the chunk (canary.py): a seed the coordinator chose, with a
   window made from that seed's own outputs, that any correct worker must report -> AnswerRejected("canary").
The answer is then rebuilt from the validated fields alone (canary removed), so what the store keeps and
the step reads is what was checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from cluster.scheduler.types import AnswerRejected
from pipeline.prng import canary
from pipeline.prng.data import History

NonNegative = Annotated[StrictInt, Field(ge=0)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
MAX_SURVIVORS_PER_TASK = 2_000_000
SCORE_SAMPLE = 8  # scores recomputed per answer besides the canary's
SCORE_TOLERANCE = 1e-5


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")  # worker metadata (versions, timings) is not trusted or kept

    ok: Literal[True]
    torch_version: str = ""
    worker_version: str = ""
    wall_seconds: float = 0.0


class TaskAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: Any
    forward_count: NonNegative
    seeds_tested: NonNegative
    survivors: Annotated[
        list[tuple[StrictInt, StrictInt, StrictInt, StrictInt]], Field(max_length=MAX_SURVIVORS_PER_TASK)
    ]


class WindowBatchAnswer(_Answer):
    kind: Literal["window_batch"]
    tasks: list[TaskAnswer]
    seeds_tested: NonNegative


class ScoreAnswer(_Answer):
    kind: Literal["score"]
    scores: list[list[Unit]]
    exact: list[Unit]
    draws: Annotated[StrictInt, Field(ge=1)]
    survivor_count: NonNegative


class SieveAnswer(_Answer):
    kind: Literal["sieve", "verify"]
    survivor_count: NonNegative
    survivors: list[tuple[StrictInt, StrictInt, StrictInt]] | None = None
    survivors_file: str | None = None
    seeds_tested: NonNegative
    seconds: float = 0.0
    seeds_per_s: float = 0.0
    device: str = ""
    path: str = ""


SCHEMAS: dict[str, type[_Answer]] = {"window_batch": WindowBatchAnswer, "score": ScoreAnswer, "sieve": SieveAnswer,
                                     "verify": SieveAnswer}  # fmt: skip


def parse(payload: dict[str, Any], answer: dict[str, Any]) -> _Answer:
    kind = payload.get("kind")
    if answer.get("kind") != kind:
        raise AnswerRejected(f"answer kind {str(answer.get('kind'))[:40]!r} for a {kind!r} job")
    try:
        return SCHEMAS[str(kind)].model_validate(answer)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(answer)"
        raise AnswerRejected(f"{where}: {first['msg']}") from None
    except KeyError:
        raise AnswerRejected(f"no answer schema for job kind {kind!r}") from None


def check(
    payload: dict[str, Any], answer: dict[str, Any], history: History, planted: canary.Planted | None = None
) -> dict[str, Any]:
    """The answer as the coordinator may believe it, or AnswerRejected saying what was wrong. planted: the
    canary the coordinator put in this payload (canary.plant), if any."""
    parsed = parse(payload, answer)
    if isinstance(parsed, WindowBatchAnswer):
        return _window_batch(payload, parsed, planted)
    if isinstance(parsed, ScoreAnswer):
        return _score(payload, parsed, history, planted)
    assert isinstance(parsed, SieveAnswer)
    return _sieve(payload, parsed)


def _window_batch(payload: dict[str, Any], answer: WindowBatchAnswer, planted: canary.Planted | None) -> dict[str, Any]:
    from pipeline.prng.sieve import SieveSpec, verify_seeds

    sent = canary.mark_tasks(payload, planted)
    if len(answer.tasks) != len(sent):
        raise AnswerRejected(f"{len(answer.tasks)} task answers for {len(sent)} tasks sent")
    kept = []
    for i, (task, got) in enumerate(zip(sent, answer.tasks, strict=True)):
        if got.tag != task.get("tag"):
            raise AnswerRejected(f"tasks[{i}].tag {str(got.tag)[:60]} was never sent (expected {task.get('tag')})")
        if "variable" in task:
            _variable_task(i, task, got)
            if not canary.is_canary(task):
                kept.append(got.model_dump())
            continue
        forward, reverse = SieveSpec.from_dict(task["forward"]), SieveSpec.from_dict(task["reverse"])
        start, end = int(task["start"]), int(task["end"])
        skips = forward.skip_max - forward.skip_min + 1
        if got.seeds_tested != end - start or got.forward_count > (end - start) * skips:
            raise AnswerRejected(f"tasks[{i}]: counts do not fit the block [{start}, {end})")
        rows = got.survivors
        if len(rows) > got.forward_count or len({r[0] for r in rows}) != len(rows):
            raise AnswerRejected(f"tasks[{i}]: {len(rows)} survivors for {got.forward_count} forward survivors")
        for seed, skip, fm, rm in rows:
            if not start <= seed < end or not forward.skip_min <= skip <= forward.skip_max:
                raise AnswerRejected(f"tasks[{i}]: survivor {seed} skip {skip} lies outside the chunk's range")
            if not (0 <= fm <= len(forward.residues) and 0 <= rm <= len(reverse.residues)):
                raise AnswerRejected(f"tasks[{i}]: survivor {seed} has impossible match counts {fm}/{rm}")
        claimed = [r[0] for r in rows]
        if canary.is_canary(task) and canary.seed_of(task) not in claimed:
            raise AnswerRejected(f"missed the planted seed {canary.seed_of(task)} of tasks[{i}]", "canary")
        if claimed:
            fwd = {s: (k, m) for s, k, m in verify_seeds(forward, claimed).survivors()}
            rev = {s: m for s, _k, m in verify_seeds(reverse, claimed).survivors()}
            for seed, skip, fm, rm in rows:
                if fwd.get(seed) != (skip, fm) or rev.get(seed) != rm:
                    raise AnswerRejected(
                        f"tasks[{i}]: survivor {seed} (skip {skip}, matches {fm}/{rm}) does not reproduce the window "
                        f"on the coordinator ({fwd.get(seed)}, {rev.get(seed)})",
                        "unverified",
                    )
        if not canary.is_canary(task):
            kept.append(got.model_dump())
    tested = sum(t["seeds_tested"] for t in kept)
    return {"ok": True, "kind": "window_batch", "tasks": kept, "seeds_tested": tested, **_meta(answer)}


def _variable_task(i: int, task: dict[str, Any], got: TaskAnswer) -> None:
    """A variable-skip block task's rows: inside the block and the spec's offsets and strategies, each (seed,
    offset, strategy) once, the canary's seed among them, and every claimed seed's rows exactly the coordinator's."""
    from pipeline.prng.sieve import SieveSpec, variable_rows_of

    spec = SieveSpec.from_dict(task["variable"])
    start, end = int(task["start"]), int(task["end"])
    rows = sorted(got.survivors)
    if got.seeds_tested != end - start or got.forward_count != len(rows):
        raise AnswerRejected(f"tasks[{i}]: counts do not fit the block [{start}, {end}) and its {len(rows)} rows")
    if len({tuple(r[:3]) for r in rows}) != len(rows):
        raise AnswerRejected(f"tasks[{i}]: a (seed, offset, strategy) row is given twice")
    for seed, offset, strategy, matches in rows:
        if not start <= seed < end or offset not in spec.offsets or not 0 <= strategy < len(spec.strategies):
            raise AnswerRejected(f"tasks[{i}]: row {seed} offset {offset} strategy {strategy} lies outside the task")
        if not spec.need <= matches <= spec.scan_length:
            raise AnswerRejected(f"tasks[{i}]: row {seed} has impossible matches {matches}")
    claimed = sorted({r[0] for r in rows})
    if canary.is_canary(task) and canary.seed_of(task) not in claimed:
        raise AnswerRejected(f"missed the planted seed {canary.seed_of(task)} of tasks[{i}]", "canary")
    again = variable_rows_of(spec, claimed).rows() if claimed else []
    if [tuple(r) for r in rows] != again:
        bad = next((r for r, a in zip([tuple(r) for r in rows], again, strict=False) if r != a), rows[0])
        raise AnswerRejected(
            f"tasks[{i}]: rows of seed {bad[0]} do not reproduce the window on the coordinator", "unverified"
        )


def _score(
    payload: dict[str, Any], answer: ScoreAnswer, history: History, planted: canary.Planted | None
) -> dict[str, Any]:
    from pipeline.prng.scoring import SCORER_DEFAULTS

    survivors: Sequence[Sequence[int]] = payload["survivors"]
    param_sets = payload.get("param_sets") or [SCORER_DEFAULTS]
    n = len(survivors)
    if answer.survivor_count != n or len(answer.exact) != n or len(answer.scores) != len(param_sets):
        raise AnswerRejected(f"score answer counts do not match the {n} survivors and {len(param_sets)} scorers sent")
    if any(len(row) != n for row in answer.scores):
        raise AnswerRejected("a scorer's row does not have one score per survivor")
    first = int(payload.get("first_index", 0))
    draws = list(history.draws[first : first + answer.draws])
    if len(draws) != answer.draws:
        raise AnswerRejected(f"answer scored {answer.draws} draws; the history has {len(draws)} from index {first}")
    probe = canary.score_probes(payload, planted, n, SCORE_SAMPLE) if all(len(s) == 3 for s in survivors) else []
    for i in probe:
        seed, skip, offset = (int(v) for v in survivors[i])
        for j, (value, exact) in enumerate(_local_scores(payload, seed, skip, offset, draws, first, param_sets)):
            got = answer.scores[j][i]
            if not math.isclose(got, value, abs_tol=SCORE_TOLERANCE) or (
                j == 0 and not math.isclose(answer.exact[i], exact, abs_tol=SCORE_TOLERANCE)
            ):
                kind = "canary" if canary.is_canary_survivor(planted, i) else "unverified"
                why = f"score of survivor {seed} (skip {skip}, offset {offset}) is {got}, not {value:.6f}"
                raise AnswerRejected(why, kind)
    keep = [i for i in range(n) if not canary.is_canary_survivor(planted, i)]
    return {
        "ok": True,
        "kind": "score",
        "scores": [[row[i] for i in keep] for row in answer.scores],
        "exact": [answer.exact[i] for i in keep],
        "draws": answer.draws,
        "survivor_count": len(keep),
        **_meta(answer),
    }


def _local_scores(
    payload: dict[str, Any], seed: int, skip: int, offset: int, draws: list[int], first: int, param_sets: list[Any]
) -> list[tuple[float, float]]:
    """One survivor's scores as the coordinator computes them (the "score" job's own arithmetic)."""
    from pipeline.prng.mappings.library import MOD, call_stream
    from pipeline.prng.scoring import score_seed

    max_tol = max(int(p.get("skip_tolerance", 0)) for p in param_sets)
    last = offset + (first + len(draws)) * (skip + max_tol + 1) + skip + max_tol + 1
    modulus = int(payload.get("modulus", 1000))
    outputs = call_stream(str(payload["generator"]), str(payload.get("mapping", MOD)), seed, last, modulus)
    out = []
    for params in param_sets:
        value, hits = score_seed(outputs, draws, first, offset, skip, params, modulus)
        out.append((round(value, 6), round(hits, 6)))
    return out


def _sieve(payload: dict[str, Any], answer: SieveAnswer) -> dict[str, Any]:
    import json

    from pipeline.prng.sieve import SieveSpec, verify_seeds

    spec = SieveSpec.from_dict(payload["spec"])
    if answer.survivors_file is not None:
        with open(answer.survivors_file, encoding="utf-8") as fh:
            rows = [tuple(r) for r in json.load(fh)["survivors"]]
    else:
        rows = list(answer.survivors or [])
    if len(rows) != answer.survivor_count:
        raise AnswerRejected(f"survivor_count {answer.survivor_count} for {len(rows)} survivors")
    if payload["kind"] == "sieve":
        start, end = int(payload["start"]), int(payload["end"])
        if answer.seeds_tested != end - start:
            raise AnswerRejected(f"seeds_tested {answer.seeds_tested} for the block [{start}, {end})")
        if any(not start <= r[0] < end for r in rows):
            raise AnswerRejected("a survivor lies outside the chunk's seed range")
    elif "seeds" in payload:
        sent = set(payload["seeds"])
        if any(r[0] not in sent for r in rows):
            raise AnswerRejected("a survivor was not among the seeds sent")
    if rows:
        again = {s: (k, m) for s, k, m in verify_seeds(spec, [r[0] for r in rows]).survivors()}
        bad = [r for r in rows if again.get(r[0]) != (r[1], r[2])]
        if bad:
            raise AnswerRejected(f"survivor {bad[0][0]} does not reproduce on the coordinator", "unverified")
    out = answer.model_dump()
    return {**out, "survivors": [list(r) for r in rows], "survivors_file": answer.survivors_file}


def _meta(answer: _Answer) -> dict[str, Any]:
    return {"torch_version": answer.torch_version[:80], "worker_version": answer.worker_version[:80],
            "wall_seconds": answer.wall_seconds}  # fmt: skip


CONFIRM_TOP = 25  # ranked survivors whose scores the coordinator recomputes before a verdict


def confirm_ranking(
    generator: str,
    modulus: int,
    history: History,
    n_train: int,
    ranked: list[dict[str, Any]],
    params: dict[str, Any],
    mapping: str = "mod",
) -> list[dict[str, Any]]:
    """The top of a ranking, rescored on the coordinator from its own copy of the history (through the data's
    mapping): nothing is claimed from scores a node reported. A row whose score differs is corrected and the
    ranking redone; the number corrected is returned in each row's `confirmed` field (False where corrected)."""
    payload = {"generator": generator, "modulus": modulus, "mapping": mapping}
    train, holdout = list(history.draws[:n_train]), list(history.draws[n_train:])
    for row in ranked[:CONFIRM_TOP]:
        seed, skip, offset = int(row["seed"]), int(row["skip"]), int(row["offset"])
        ((t_score, t_exact),) = _local_scores(payload, seed, skip, offset, train, 0, [params])
        ((h_score, h_exact),) = _local_scores(payload, seed, skip, offset, holdout, n_train, [params])
        local = {"train_score": t_score, "train_match": t_exact, "holdout_score": h_score, "holdout_match": h_exact}
        row["confirmed"] = all(math.isclose(row[k], v, abs_tol=SCORE_TOLERANCE) for k, v in local.items())
        row.update(local)
    ranked.sort(key=lambda r: (-r["train_score"], -r["holdout_match"], r["seed"]))
    for rank, row in enumerate(ranked, 1):
        row["rank"] = rank
    return ranked
