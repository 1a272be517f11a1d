"""Synthetic draw histories with a known (planted) seed, so the pipeline's recovery can be checked.

`python -m pipeline.prng.synth --generator G --seed S --draws N --offset O --skip K --out PATH` writes the history
and PATH.truth.json next to it. Draw i of the history is output `offset + i*(skip+1) + skip` mod modulus,
the same position rule the sieve uses.

`--skip-mode variable --strategy MISSES TOLERANCE` plants a variable-skip history with the operators' strategy
semantics (pipeline.prng.sieve.variable): from `offset`, with the expected skip E = 5, each draw's skip is
drawn from E-tolerance..E+tolerance (not below 0) and E moves to it (families whose window never moves keep
E = 5); a skip is only taken when no smaller skip of the window gives the same residue, so the strategy's scan
(first, smallest matching skip) finds exactly the planted skips. The truth records the skip sequence.

`--mapping M` makes each draw a library call instead of a raw output mod modulus (pipeline.prng.mappings: e.g.
java_next_int is `new Random(seed).nextInt(modulus)` called again and again); positions then count calls.
`--draw-low L` adds L to every draw (the history then needs `data.draw_low: L`).

`--session-only NAME` feeds the planted stream into that session's draws only; the other session's draws are
noise (from --rng-seed), so the seed is only recovered with `data.session: NAME`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from cluster.files import write_json_atomic
from pipeline.prng.generators.reference import ALL_GENERATORS, REFERENCE
from pipeline.prng.mappings.library import MAPPING_NAMES, MOD, call_stream, mapping_error

SESSIONS = ("midday", "evening")  # two draws a day, like a daily lottery


def make_history(
    generator: str,
    seed: int,
    draws: int,
    *,
    offset: int = 0,
    skip: int = 0,
    modulus: int = 1000,
    start_date: str = "2024-01-01",
    mapping: str = MOD,
    low: int = 0,
) -> list[dict[str, Any]]:
    """History records in time order: {"date", "session", "draw"}. mapping: the library call whose values are
    the draws (positions then count calls); low: added to every draw (data.draw_low)."""
    if draws < 1:
        raise ValueError(f"draws={draws} must be >= 1")
    if offset < 0 or skip < 0:
        raise ValueError("offset and skip must be >= 0")
    if modulus < 2:
        raise ValueError(f"modulus={modulus} must be >= 2")
    values = iter(planted_values(generator, seed, draws, offset, skip, modulus, mapping, low))
    return _records(draws, values, start_date)


def planted_values(
    generator: str, seed: int, draws: int, offset: int, skip: int, modulus: int, mapping: str = MOD, low: int = 0
) -> list[int]:
    """Draw i = low + the value of call `offset + i*(skip+1) + skip` (mod: the raw output mod modulus)."""
    problem = mapping_error(mapping, generator, modulus)
    if problem:
        raise ValueError(f"mapping: {problem}")
    stream = call_stream(generator, mapping, seed, offset + draws * (skip + 1), modulus)
    return [low + stream[offset + i * (skip + 1) + skip] % modulus for i in range(draws)]


def _records(
    draws: int, planted: Iterator[int], start_date: str, session_only: str | None = None, noise: int = 0,
    modulus: int = 1000,
) -> list[dict[str, Any]]:  # fmt: skip
    """Two draws a day; the planted values go to every draw, or to `session_only`'s draws (others: noise)."""
    day0 = dt.date.fromisoformat(start_date)
    rng = random.Random(noise)
    history = []
    for i in range(draws):
        day = day0 + dt.timedelta(days=i // len(SESSIONS))
        session = SESSIONS[i % len(SESSIONS)]
        value = next(planted) if session_only in (None, session) else rng.randrange(modulus)
        history.append({"date": day.isoformat(), "session": session, "draw": value})
    return history


def variable_draws(
    generator: str, seed: int, draws: int, *, offset: int = 0, strategy: Sequence[int] = (3, 5),
    modulus: int = 1000, rng_seed: int = 0,
) -> tuple[list[int], list[int]]:  # fmt: skip
    """(draws, skips) planted with one strategy's semantics (module docstring): every draw is one the strategy's
    scan matches at exactly the planted skip."""
    from pipeline.prng.sieve.variable import EXPECTED_START, rule_for

    if len(strategy) != 2 or strategy[1] < 0:
        raise ValueError(f"strategy={list(strategy)} must be [max_misses, tolerance] with tolerance >= 0")
    tolerance = int(strategy[1])
    adaptive = rule_for(generator).adaptive
    rng = random.Random(rng_seed)
    it = REFERENCE[generator](seed)
    values: list[int] = []
    out, skips = [], []
    pos, e = offset, EXPECTED_START
    for _ in range(draws):
        lo, hi = (e - tolerance if e > tolerance else 0), e + tolerance
        while len(values) < pos + hi + 1:
            values.append(next(it) % modulus)
        window = values[pos : pos + hi + 1]
        choices = [s for s in range(lo, hi + 1) if window[s] not in window[lo:s]]  # no smaller skip matches first
        s = rng.choice(choices)
        out.append(window[s])
        skips.append(s)
        pos += s + 1
        if adaptive:
            e = s
    return out, skips


def wandering_draws(
    generator: str, seed: int, draws: int, *, offset: int = 0, skips: Sequence[int] = (5, 20), step: int = 2,
    modulus: int = 1000, rng_seed: int = 0,
) -> tuple[list[int], list[int]]:  # fmt: skip
    """(draws, skips) as a program that skips a wandering number of outputs writes them, with no strategy in mind:
    after `offset` outputs, skip s_j outputs then draw the next one; s_0 = skips[0] and each later skip moves by at
    most `step`, staying within skips[0]..skips[1]. A strategy's scan (first, smallest matching skip) may take an
    earlier output that happens to equal a draw, and a narrow one may then lose the stream."""
    low, high = int(skips[0]), int(skips[1])
    if not 0 <= low <= high or step < 0:
        raise ValueError(f"skips={list(skips)} and step={step}: need 0 <= low <= high and step >= 0")
    rng = random.Random(rng_seed)
    it = REFERENCE[generator](seed)
    for _ in range(offset):
        next(it)
    out, walk, s = [], [], low
    for j in range(draws):
        if j:
            s = min(high, max(low, s + rng.randint(-step, step)))
        for _ in range(s):
            next(it)
        out.append(next(it) % modulus)
        walk.append(s)
    return out, walk


def make_variable_history(
    generator: str, seed: int, draws: int, *, offset: int = 0, strategy: Sequence[int] = (3, 5),
    modulus: int = 1000, start_date: str = "2024-01-01", rng_seed: int = 0, session_only: str | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:  # fmt: skip
    """A variable-skip history (records) and its planted skip sequence."""
    planted = draws if session_only is None else sum(1 for i in range(draws) if SESSIONS[i % 2] == session_only)
    values, skips = variable_draws(generator, seed, planted, offset=offset, strategy=strategy, modulus=modulus,
                                   rng_seed=rng_seed)  # fmt: skip
    return _records(draws, iter(values), start_date, session_only, rng_seed + 1, modulus), skips


def make_session_history(
    generator: str, seed: int, draws: int, session: str, *, offset: int = 0, skip: int = 0, modulus: int = 1000,
    start_date: str = "2024-01-01", noise: int = 1,
) -> list[dict[str, Any]]:  # fmt: skip
    """`draws` records whose `session` draws come from the seed (fixed skip), the others from noise."""
    if session not in SESSIONS:
        raise ValueError(f"session={session!r} must be one of {', '.join(SESSIONS)}")
    planted = sum(1 for i in range(draws) if SESSIONS[i % 2] == session)
    values = iter(planted_values(generator, seed, planted, offset, skip, modulus))
    return _records(draws, values, start_date, session, noise, modulus)


def truth(
    generator: str, seed: int, draws: int, offset: int, skip: int, modulus: int = 1000, mapping: str = MOD,
    low: int = 0,
) -> dict[str, Any]:  # fmt: skip
    extra: dict[str, Any] = {"mapping": mapping} if mapping != MOD else {}
    if low:
        extra["draw_low"] = low
    return {"generator": generator, "seed": seed, "offset": offset, "skip": skip, "draws": draws, "modulus": modulus,
            **extra}  # fmt: skip


def write_history(
    path: str,
    generator: str,
    seed: int,
    draws: int,
    *,
    offset: int = 0,
    skip: int = 0,
    modulus: int = 1000,
    start_date: str = "2024-01-01",
    mapping: str = MOD,
    low: int = 0,
) -> list[dict[str, Any]]:
    history = make_history(generator, seed, draws, offset=offset, skip=skip, modulus=modulus, start_date=start_date,
                           mapping=mapping, low=low)  # fmt: skip
    write_json_atomic(path, history, style="records")
    write_json_atomic(path + ".truth.json", truth(generator, seed, draws, offset, skip, modulus, mapping, low))
    return history


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.prng.synth", description="Write a synthetic draw history.")
    p.add_argument("--generator", required=True, choices=ALL_GENERATORS)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--draws", required=True, type=int)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--skip", type=int, default=0)
    p.add_argument("--modulus", type=int, default=1000)
    p.add_argument("--start-date", default="2024-01-01", help="ISO date of the first draw")
    p.add_argument("--mapping", choices=MAPPING_NAMES, default=MOD,
                   help="the library call that makes each draw (data.mapping; fixed skips only)")  # fmt: skip
    p.add_argument("--draw-low", type=int, default=0, help="added to every draw (data.draw_low)")
    p.add_argument("--skip-mode", choices=("fixed", "variable"), default="fixed")
    p.add_argument("--strategy", type=int, nargs=2, metavar=("MISSES", "TOLERANCE"), default=[3, 5],
                   help="variable mode: the strategy whose semantics plant the skips (default 3 5)")  # fmt: skip
    p.add_argument("--session-only", choices=SESSIONS, help="plant the seed in this session's draws only")
    p.add_argument("--rng-seed", type=int, default=0, help="variable skips and noise draws come from this")
    p.add_argument("--out", required=True, help="history path; PATH.truth.json is written beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.skip_mode == "variable" or args.session_only:
            if args.mapping != MOD or args.draw_low:
                raise ValueError("--mapping and --draw-low plant fixed-skip histories of every session only")
            write_planted(args)
            print(f"wrote {args.draws} draws to {args.out} (truth in {args.out}.truth.json)")
            return 0
        write_history(
            args.out,
            args.generator,
            args.seed,
            args.draws,
            offset=args.offset,
            skip=args.skip,
            modulus=args.modulus,
            start_date=args.start_date,
            mapping=args.mapping,
            low=args.draw_low,
        )
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.draws} draws to {args.out} (truth in {args.out}.truth.json)")
    return 0


def write_planted(args: argparse.Namespace) -> None:
    """The variable-skip and single-session histories of the CLI, with their truth."""
    if args.draws < 1 or args.offset < 0 or args.skip < 0 or args.modulus < 2:
        raise ValueError("draws >= 1, offset >= 0, skip >= 0 and modulus >= 2 are needed")
    found = truth(args.generator, args.seed, args.draws, args.offset, args.skip, args.modulus)
    if args.skip_mode == "variable":
        history, skips = make_variable_history(
            args.generator, args.seed, args.draws, offset=args.offset, strategy=args.strategy, modulus=args.modulus,
            start_date=args.start_date, rng_seed=args.rng_seed, session_only=args.session_only,
        )  # fmt: skip
        found.update(skip_mode="variable", skip=None, strategy=list(args.strategy), skip_sequence=skips)
    else:
        history = make_session_history(args.generator, args.seed, args.draws, args.session_only, offset=args.offset,
                                       skip=args.skip, modulus=args.modulus, start_date=args.start_date,
                                       noise=args.rng_seed + 1)  # fmt: skip
    found["session"] = args.session_only or "both"
    write_json_atomic(args.out, history, style="records")
    write_json_atomic(args.out + ".truth.json", found)


if __name__ == "__main__":
    sys.exit(main())
