"""Synthetic draw histories with a known (planted) seed, so the pipeline's recovery can be checked.

`python -m pipeline.prng.synth --generator G --seed S --draws N --offset O --skip K --out PATH` writes the history
and PATH.truth.json next to it. Draw i of the history is output `offset + i*(skip+1) + skip` mod modulus,
the same position rule the sieve uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from cluster.files import write_json_atomic
from pipeline.prng.generators.reference import GENERATORS, generate

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
) -> list[dict[str, Any]]:
    """History records in time order: {"date", "session", "draw"}."""
    if draws < 1:
        raise ValueError(f"draws={draws} must be >= 1")
    if offset < 0 or skip < 0:
        raise ValueError("offset and skip must be >= 0")
    if modulus < 2:
        raise ValueError(f"modulus={modulus} must be >= 2")
    day0 = dt.date.fromisoformat(start_date)
    stream = generate(generator, seed, offset + draws * (skip + 1))
    history = []
    for i in range(draws):
        day = day0 + dt.timedelta(days=i // len(SESSIONS))
        value = stream[offset + i * (skip + 1) + skip] % modulus
        history.append({"date": day.isoformat(), "session": SESSIONS[i % len(SESSIONS)], "draw": value})
    return history


def truth(generator: str, seed: int, draws: int, offset: int, skip: int, modulus: int = 1000) -> dict[str, Any]:
    return {"generator": generator, "seed": seed, "offset": offset, "skip": skip, "draws": draws, "modulus": modulus}


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
) -> list[dict[str, Any]]:
    history = make_history(generator, seed, draws, offset=offset, skip=skip, modulus=modulus, start_date=start_date)
    write_json_atomic(path, history, style="records")
    write_json_atomic(path + ".truth.json", truth(generator, seed, draws, offset, skip, modulus))
    return history


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.prng.synth", description="Write a synthetic draw history.")
    p.add_argument("--generator", required=True, choices=GENERATORS)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--draws", required=True, type=int)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--skip", type=int, default=0)
    p.add_argument("--modulus", type=int, default=1000)
    p.add_argument("--start-date", default="2024-01-01", help="ISO date of the first draw")
    p.add_argument("--out", required=True, help="history path; PATH.truth.json is written beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        write_history(
            args.out,
            args.generator,
            args.seed,
            args.draws,
            offset=args.offset,
            skip=args.skip,
            modulus=args.modulus,
            start_date=args.start_date,
        )
    except ValueError as exc:
        print(f"synth: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.draws} draws to {args.out} (truth in {args.out}.truth.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
