"""Step 2: the best window of step 1 over the whole configured seed range, every offset and skip of the
envelope, forward then reverse, chunked across the cluster -> bidirectional_survivors.json. It sieves the
session step 1 chose (data.session unless step 1 searched sessions). With data.skip_mode: variable it sieves the
one variable-skip window at every offset under every strategy (one task per seed block), and each survivor carries
every (offset, strategy) that passed ("passing", for steps 2.5 and 3 to choose among on the train draws), and the
first offset's first strategy with the most matches with the skip sequence it finds over the window (recomputed on
the coordinator)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipeline.outputs import read_output, write_output
from pipeline.prng.chance import significant
from pipeline.prng.windows import (
    block_tasks,
    expected_bidirectional,
    merge_survivors,
    offsets,
    sieve_payloads,
    tasks_per_block,
    with_skip_sequences,
)
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
        hashes = ctx.input_hashes()
        config = read_output(ctx.output_dir / WINDOW_CONFIG, "window_config", hashes)
        work = prng(ctx, config.get("session"))
        data = work.data
        window, threshold = int(config["window_size"]), float(config["threshold"])
        lo, hi = data.seed_range
        per_block = tasks_per_block(data)
        tasks = [
            task
            for start in range(lo, hi, p.chunk_seeds)
            for task in block_tasks(data, work.train, window, threshold, start, min(start + p.chunk_seeds, hi))
        ]
        payloads = sieve_payloads(tasks, per_block)
        ctx.expect_work((hi - lo) * per_block, per_shown_unit=per_block)  # the field counts (seed, offset) pairs
        merged = merge_survivors(ctx.run_jobs(payloads, label="sieve")).get(None, {"forward": 0, "survivors": {}})
        expected = expected_bidirectional(data, hi - lo, window, threshold)
        rows = sorted(merged["survivors"].values(), key=lambda r: r["seed"])
        with_skip_sequences(data, work.train, window, rows)
        mode = {"skip_mode": "variable", "strategies": [list(s) for s in data.strategies]} if data.variable else {}
        data_out = {
            **mode,
            "session": work.history.session,
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
            "seeds_tested": (hi - lo) * len(offsets(data)),
            "chunks": len(payloads),
            "coverage": 1.0,
            "significant": significant(len(rows), expected),
            "window_size": window,
            "threshold": threshold,
        }
        return StepResult(metrics, {BIDIRECTIONAL: path})
