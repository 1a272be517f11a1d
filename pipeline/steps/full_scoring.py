"""Step 3: every survivor scored on train and holdout (the nodes' ramdisk copies) with the tuned scorer
-> ranked_survivors.json. The verdict is honest, and it is `watcher verify`'s: the top survivor is judged by
pipeline.prng.verdict.judge (its reading chosen on the train draws, the holdout judging that choice, the chance
counted over every offset and skip or strategy of the search and every seed of the 2**32 space), so a top
survivor whose holdout match is no better than chance is reported as "no seed reproduces", not as a recovered
seed. Variable-skip survivors are scored at the (offset, strategy) their training draws choose among those that
passed the window, with that strategy's skips carried on through train into the holdout. With a data.mapping the
survivors are scored (and the top rescored on the coordinator) on the seed's library calls; the chance per draw
stays 1/modulus (every mapping draws uniformly)."""

from __future__ import annotations

from typing import Any

from pipeline.outputs import read_output, write_output
from pipeline.prng.answers import confirm_ranking
from pipeline.prng.data import DataSpec
from pipeline.prng.scoring import chance_baseline, confirm_variable_ranking, variable_chance_baseline
from pipeline.prng.verdict import Envelope, judge, luck
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.steps.common import (
    BIDIRECTIONAL,
    HOLDOUT_FILE,
    RANKED,
    SCORER_CONFIG,
    TRAIN_FILE,
    chosen_rows,
    prng,
    score_payloads,
    score_rows,
)


def judged(top: dict[str, Any], data: DataSpec, draws: Any, n_train: int) -> dict[str, Any]:
    """pipeline.prng.verdict.judge on the top survivor: its candidates are the (offset, strategy) pairs that passed
    the window (variable skips) or its (offset, skip); the envelope is the data set's whole search."""
    if data.variable:
        cands = [(int(o), int(i)) for o, i, _m in top.get("passing") or [[top["offset"], top["strategy"], 0]]]
    else:
        cands = [(int(top["offset"]), int(top["skip"]))]
    return judge(data.generator, int(top["seed"]), draws, n_train, data.modulus, Envelope.of(data), cands)


def recovered_verdict(seed: int, got: dict[str, Any]) -> str:
    """What a recovery says: the holdout match, the chance per draw, the reading and the odds over every choice."""
    if "strategy" in got:
        misses, tolerance = got["strategy_params"]
        where = f"offset {got['offset']}, strategy {got['strategy']} ({misses} misses / tolerance {tolerance})"
    else:
        where = f"offset {got['offset']}, skip {got['skip']}"
    return (
        f"seed {seed} recovered: holdout match {got['holdout_match']:.0%} (chance {got['chance_per_draw']:.1%}) at "
        f"{where}; {got['matches']}/{got['draws']} draws match, as many by luck: {luck(got['log10_chance_seeds'])} "
        f"seeds of 2^32 over {got['choices']} choice(s)"
    )


def no_seed_verdict(data: DataSpec, sieve: dict[str, Any], best_holdout: float | None) -> str:
    """What an exhaustive search that found nothing says: exactly what was searched, and the odds."""
    lo, hi = data.seed_range
    best = f"; best holdout match {best_holdout:.0%}" if best_holdout is not None else ""
    skips = (
        f"variable skips (strategies {', '.join(f'{m}/{t}' for m, t in data.strategies)})"
        if data.variable
        else f"skips {data.skip_range[0]}-{data.skip_range[1]}"
    )
    session = f", session {sieve['session']}" if sieve.get("session", "both") != "both" else ""
    drawn = f" drawn through {data.mapping}" if data.mapping != "mod" else ""
    return (
        f"no seed reproduces this history{session}: {data.generator} seeds [{lo}, {hi}) ({hi - lo} seeds){drawn}, "
        f"offsets {data.offset_range[0]}-{data.offset_range[1]}, {skips} searched "
        f"with window {sieve['window_size']} at threshold {sieve['threshold']:g}; "
        f"{len(sieve['survivors'])} survivor(s) where chance expects {sieve['expected_chance']:.3g}{best}"
    )


class FullScoring(Step[StepParams]):
    number = 3.0
    name = "full_scoring"
    Params = StepParams
    inputs = (BIDIRECTIONAL, SCORER_CONFIG)
    outputs = (RANKED,)
    ramdisk_files = (TRAIN_FILE, HOLDOUT_FILE)

    def _score(
        self, ctx: StepContext[StepParams], triples: list[list[int]], name: str, first: int, params: dict[str, Any]
    ):
        payloads, parts = score_payloads(ctx, triples, name, first, [params])
        results = ctx.run_jobs(payloads, label=f"score {name}")
        scores: dict[int, tuple[float, float]] = {}
        for i, result in enumerate(results):
            for triple, value, exact in zip(triples[i::parts], result["scores"][0], result["exact"], strict=True):
                scores[triple[0]] = (value, exact)
        return scores

    def run(self, ctx: StepContext[StepParams]) -> StepResult:
        hashes = ctx.input_hashes()
        sieve = read_output(ctx.output_dir / BIDIRECTIONAL, "bidirectional_survivors", hashes)
        work = prng(ctx, sieve.get("session"))
        data = work.data
        survivors = chosen_rows(work, sieve["survivors"])
        params = read_output(ctx.output_dir / SCORER_CONFIG, "scorer_config", hashes)["params"]
        triples = score_rows(work, survivors)
        ranked: list[dict[str, Any]] = []
        if triples:
            train = self._score(ctx, triples, TRAIN_FILE, 0, params)
            holdout = self._score(ctx, triples, HOLDOUT_FILE, len(work.train), params)
            for s in survivors:
                t_score, t_exact = train[s["seed"]]
                h_score, h_exact = holdout[s["seed"]]
                ranked.append(
                    {
                        **s,
                        "train_score": t_score,
                        "train_match": t_exact,
                        "holdout_score": h_score,
                        "holdout_match": h_exact,
                    }
                )
            ranked.sort(key=lambda r: (-r["train_score"], -r["holdout_match"], r["seed"]))
            for rank, row in enumerate(ranked, 1):
                row["rank"] = rank
            # nothing is claimed from node-reported scores: the top is rescored on the coordinator
            if not data.variable:
                ranked = confirm_ranking(data.generator, data.modulus, work.history, len(work.train), ranked, params,
                                         data.mapping)  # fmt: skip
            else:
                ranked = confirm_variable_ranking(data.generator, data.modulus, data.strategies, work.history.draws,
                                                  len(work.train), ranked, params)  # fmt: skip
        top = ranked[0] if ranked else None
        got = judged(top, data, work.history.draws, len(work.train)) if top else None
        recovered = bool(got and got["reproduces"])
        baseline = chance_baseline(params, data.modulus)
        if data.variable:
            baseline = variable_chance_baseline(params, max(t for _m, t in data.strategies), data.modulus)
        if recovered and top and got:
            verdict = recovered_verdict(top["seed"], got)
        else:
            verdict = no_seed_verdict(data, sieve, got["holdout_match"] if got else None)
        out = {
            "verdict": verdict,
            "recovered": recovered,
            "judged": {"seed": top["seed"], **got} if top and got else None,
            "scorer": params,
            "chance_baseline": baseline,
            "ranked": ranked,
        }
        path = write_output(ctx.output_dir / RANKED, "ranked_survivors", out, hashes)
        metrics = {
            "survivors": len(ranked),
            "scored": len(ranked),
            "recovered": recovered,
            "top_seed": top["seed"] if top else None,
            "holdout_match": top["holdout_match"] if top else None,
            "verdict": verdict,
        }
        return StepResult(metrics, {RANKED: path})
