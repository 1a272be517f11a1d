"""Step 2: the best window of step 1 over the whole configured seed range, every offset and skip of the
envelope, forward then reverse, chunked across the cluster -> bidirectional_survivors.json."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipeline.outputs import read_output, write_output
from pipeline.prng.chance import significant
from pipeline.prng.windows import block_tasks, expected_bidirectional, merge_survivors, offsets, sieve_payloads
from pipeline.step import Step, StepContext, StepParams, StepResult
from pipeline.steps.common import BIDIRECTIONAL, TRAIN_FILE, WINDOW_CONFIG, prng


class SieveParams(StepParams):
    chunk_seeds: Annotated[int, Field(ge=1 << 10, le=1 << 32)] = 1 << 22


class BidirectionalSieve(Step[SieveParams]):
    number = 2.0
    name = "bidirectional_sieve"
    Params = SieveParams
    inputs = (WINDOW_CONFIG,)
    outputs = (BIDIRECTIONAL,)
    ramdisk_files = (TRAIN_FILE,)
    search = "exhaustive"

    def run(self, ctx: StepContext[SieveParams]) -> StepResult:
        p = ctx.params
        work = prng(ctx)
        data = work.data
        hashes = ctx.input_hashes()
        config = read_output(ctx.output_dir / WINDOW_CONFIG, "window_config", hashes)
        window, threshold = int(config["window_size"]), float(config["threshold"])
        lo, hi = data.seed_range
        per_block = len(offsets(data))
        tasks = [
            task
            for start in range(lo, hi, p.chunk_seeds)
            for task in block_tasks(data, work.train, window, threshold, start, min(start + p.chunk_seeds, hi))
        ]
        payloads = sieve_payloads(tasks, per_block)
        merged = merge_survivors(ctx.run_jobs(payloads, label="sieve")).get(None, {"forward": 0, "survivors": {}})
        expected = expected_bidirectional(data, hi - lo, window, threshold)
        rows = sorted(merged["survivors"].values(), key=lambda r: r["seed"])
        data_out = {
            "window_size": window,
            "threshold": threshold,
            "seed_range": [lo, hi],
            "forward_survivors": merged["forward"],
            "expected_chance": expected,
            "survivors": rows,
        }
        path = write_output(ctx.output_dir / BIDIRECTIONAL, "bidirectional_survivors", data_out, hashes)
        metrics = {
            "survivors": len(rows),
            "forward_survivors": merged["forward"],
            "expected_chance_survivors": expected,
            "seeds_tested": (hi - lo) * per_block,
            "chunks": len(payloads),
            "coverage": 1.0,
            "significant": significant(len(rows), expected),
            "window_size": window,
            "threshold": threshold,
        }
        return StepResult(metrics, {BIDIRECTIONAL: path})
