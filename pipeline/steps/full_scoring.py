"""Step 3: every survivor scored on train and holdout (the nodes' ramdisk copies) with the tuned scorer
-> ranked_survivors.json. The verdict is honest: a top survivor whose holdout match is no better than
chance is reported as "no survivor beats chance", not as a recovered seed. Variable-skip survivors are scored
with their strategy's skips, carried on through train into the holdout; their chance per draw is that of
their strategy's 2*tolerance+1 candidate skips, and a recovery must also be significant against it. With a
data.mapping the survivors are scored (and the top rescored on the coordinator) on the seed's library calls; the
chance per draw stays 1/modulus (every mapping draws uniformly)."""

from __future__ import annotations

import math
from typing import Any

from pipeline.outputs import read_output, write_output
from pipeline.prng.answers import confirm_ranking
from pipeline.prng.chance import SIGNIFICANCE
from pipeline.prng.data import DataSpec
from pipeline.prng.mappings import chance_per_draw
from pipeline.prng.scoring import (
    chance_baseline,
    confirm_variable_ranking,
    log10_binomial_tail,
    variable_chance_baseline,
)
from pipeline.prng.sieve.variable import draw_hit_probability
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.steps.common import (
    BIDIRECTIONAL,
    HOLDOUT_FILE,
    RANKED,
    SCORER_CONFIG,
    TRAIN_FILE,
    prng,
    score_payloads,
    score_rows,
)

RECOVERED_MATCH = 0.5  # holdout exact-match fraction far above chance (1/modulus)


def variable_recovered(top: dict[str, Any], data: DataSpec, n_holdout: int, candidates: int) -> tuple[bool, float]:
    """(recovered, chance per draw) for a variable-skip top survivor: a holdout match of at least
    RECOVERED_MATCH that no candidate would reach by chance (binomial tail x candidates < SIGNIFICANCE)."""
    chance = draw_hit_probability(data.strategies[int(top["strategy"])][1], data.modulus)
    hits = round(top["holdout_match"] * n_holdout)
    tail = log10_binomial_tail(n_holdout, hits, chance) + math.log10(max(1, candidates))
    return top["holdout_match"] >= RECOVERED_MATCH and tail < math.log10(SIGNIFICANCE), chance


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
        survivors = sieve["survivors"]
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
        chance = chance_per_draw(data.mapping, data.modulus)  # 1/modulus: every mapping draws uniformly
        recovered = bool(top and top["holdout_match"] >= max(RECOVERED_MATCH, 10 * chance))
        baseline = chance_baseline(params, data.modulus)
        if data.variable:
            recovered, chance = variable_recovered(top, data, len(work.holdout), len(ranked)) if top else (False, 0.0)
            baseline = variable_chance_baseline(params, max(t for _m, t in data.strategies), data.modulus)
        if recovered and top:
            verdict = f"seed {top['seed']} recovered: holdout match {top['holdout_match']:.0%} (chance {chance:.1%})"
        else:
            verdict = no_seed_verdict(data, sieve, top["holdout_match"] if top else None)
        out = {
            "verdict": verdict,
            "recovered": recovered,
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
