"""Step 3: every survivor scored on train and holdout (the nodes' ramdisk copies) with the tuned scorer
-> ranked_survivors.json. The verdict is honest: a top survivor whose holdout match is no better than
chance is reported as "no survivor beats chance", not as a recovered seed."""

from __future__ import annotations

from typing import Any

from pipeline.outputs import read_output, write_output
from pipeline.prng.data import DataSpec
from pipeline.prng.scoring import chance_baseline
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.steps.common import BIDIRECTIONAL, HOLDOUT_FILE, RANKED, SCORER_CONFIG, TRAIN_FILE, prng, score_payloads

RECOVERED_MATCH = 0.5  # holdout exact-match fraction far above chance (1/modulus)


def no_seed_verdict(data: DataSpec, sieve: dict[str, Any], best_holdout: float | None) -> str:
    """What an exhaustive search that found nothing says: exactly what was searched, and the odds."""
    lo, hi = data.seed_range
    best = f"; best holdout match {best_holdout:.0%}" if best_holdout is not None else ""
    return (
        f"no seed reproduces this history: {data.generator} seeds [{lo}, {hi}) ({hi - lo} seeds), offsets "
        f"{data.offset_range[0]}-{data.offset_range[1]}, skips {data.skip_range[0]}-{data.skip_range[1]} searched "
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
        work = prng(ctx)
        data = work.data
        hashes = ctx.input_hashes()
        sieve = read_output(ctx.output_dir / BIDIRECTIONAL, "bidirectional_survivors", hashes)
        survivors = sieve["survivors"]
        params = read_output(ctx.output_dir / SCORER_CONFIG, "scorer_config", hashes)["params"]
        triples = [[s["seed"], s["skip"], s["offset"]] for s in survivors]
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
        top = ranked[0] if ranked else None
        chance = 1 / data.modulus
        recovered = bool(top and top["holdout_match"] >= max(RECOVERED_MATCH, 10 * chance))
        if recovered and top:
            verdict = f"seed {top['seed']} recovered: holdout match {top['holdout_match']:.0%} (chance {chance:.1%})"
        else:
            verdict = no_seed_verdict(data, sieve, top["holdout_match"] if top else None)
        out = {
            "verdict": verdict,
            "recovered": recovered,
            "scorer": params,
            "chance_baseline": chance_baseline(params, data.modulus),
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
