"""Does a seed reproduce a history? One answer for `watcher verify` and for the pipeline's verdict (step 3), and one
choice among a seed's candidate readings for the steps that score it (2.5 and 3).

A seed is read under a choice: (offset, skip) with fixed skips, (offset, strategy index) with variable skips (the
operators' scan, pipeline.prng.scoring.variable_scan, carried on over the whole history). The `Envelope` is every
choice a search tried (data.offset_range with data.skip_range or data.strategies; `watcher verify` may narrow it).

- `choose`: among the candidates (every choice of the envelope for `watcher verify`; the (offset, strategy) pairs
  that passed the sieve's window for a pipeline survivor) the one with the most matches on the training draws,
  the first in (offset, skip or strategy) order on ties. The holdout plays no part in the choice.
- `judge`: the holdout then judges that choice: the seed reproduces the history when the choice matches at least
  REPRODUCES_MATCH of the holdout draws and, over the whole history, fewer than REPRODUCES_CHANCE seeds of the
  2**32 space would match as many draws by luck under one of the envelope's choices: the binomial tail of each
  choice (per draw 1/modulus with fixed skips, the 2*tolerance+1 chances of its strategy's window with variable
  skips; the give-up rule ignored, so chance is never understated) summed over every choice, times 2**32. That
  bound holds however the seed was found (any search looked at no more than every seed under every choice), so
  the pipeline and `watcher verify` state the same verdict for the same seed, history and candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.prng.scoring import log10_binomial_tail, variable_scan

SEED_SPACE = 1 << 32
REPRODUCES_MATCH = 0.5  # the chosen reading must explain at least this fraction of the holdout draws
REPRODUCES_CHANCE = 0.01  # ... and fewer than this many seeds of the 32-bit space would do as well by luck

Choice = tuple[int, int]  # (offset, skip) or (offset, strategy index)


@dataclass(frozen=True)
class Envelope:
    """Every choice a search tried: offsets x skips (fixed) or offsets x strategies (variable, when given)."""

    offsets: tuple[int, ...]
    skips: tuple[int, ...] = (0,)
    strategies: tuple[tuple[int, int], ...] = ()
    mapping: str = "mod"

    @classmethod
    def of(cls, data: Any) -> Envelope:
        """The envelope of a pipeline.prng.data.DataSpec (untyped here: data imports nothing of this module)."""
        offsets = tuple(range(data.offset_range[0], data.offset_range[1] + 1))
        if data.variable:
            return cls(offsets, strategies=tuple(tuple(s) for s in data.strategies))
        return cls(offsets, tuple(range(data.skip_range[0], data.skip_range[1] + 1)), mapping=data.mapping)

    @property
    def variable(self) -> bool:
        return bool(self.strategies)

    def choices(self) -> list[Choice]:
        second = range(len(self.strategies)) if self.variable else self.skips
        return [(offset, s) for offset in self.offsets for s in second]

    def chance(self, choice: Choice, modulus: int) -> float:
        """A random seed's chance to match one draw under this choice."""
        if not self.variable:
            return 1.0 / modulus
        from pipeline.prng.sieve.variable import draw_hit_probability

        return draw_hit_probability(int(self.strategies[choice[1]][1]), modulus)


@dataclass
class Reading:
    """One choice scanned over the draws: a hit per draw and, with variable skips, the skip per draw."""

    choice: Choice
    hits: list[bool]
    skips: list[int]


def read(generator: str, seed: int, draws: Sequence[int], modulus: int, env: Envelope,
         choices: Sequence[Choice]) -> list[Reading]:  # fmt: skip
    """The seed read under each choice over `draws` (the history from its first draw)."""
    if env.variable:
        out = []
        for offset, index in choices:
            misses, tolerance = env.strategies[index]
            scan = variable_scan(generator, seed, offset, int(misses), int(tolerance), draws, modulus)
            out.append(Reading((offset, index), [e for _s, e, _l in scan], [s for s, _e, _l in scan]))
        return out
    from pipeline.prng.mappings.library import call_stream

    n = len(draws)
    last = max(o for o, _ in choices) + n * (max(s for _, s in choices) + 1)
    outputs = call_stream(generator, env.mapping, seed, last, modulus)
    return [Reading((o, s), [outputs[o + i * (s + 1) + s] % modulus == d for i, d in enumerate(draws)], [])
            for o, s in choices]  # fmt: skip


def best(readings: Sequence[Reading], n_train: int) -> Reading:
    """The reading with the most matches on the first n_train draws; the first on ties."""
    top = readings[0]
    for r in readings[1:]:
        if sum(r.hits[:n_train]) > sum(top.hits[:n_train]):
            top = r
    return top


def choose(generator: str, seed: int, train: Sequence[int], modulus: int, env: Envelope,
           candidates: Sequence[Choice] | None = None) -> Reading:  # fmt: skip
    """The candidate (default: every choice of the envelope) with the most matches on the training draws."""
    cands = sorted(candidates) if candidates is not None else env.choices()
    if not cands:
        raise ValueError("choose() needs at least one candidate")
    return best(read(generator, seed, train, modulus, env, cands), len(train))


def judge(generator: str, seed: int, draws: Sequence[int], n_train: int, modulus: int, env: Envelope,
          candidates: Sequence[Choice] | None = None) -> dict[str, Any]:  # fmt: skip
    """The choice made on the train draws (`choose`), its matches on train and holdout, and whether the seed
    reproduces the history (module docstring)."""
    cands = sorted(candidates) if candidates is not None else env.choices()
    if not cands:
        raise ValueError("judge() needs at least one candidate")
    chosen = best(read(generator, seed, draws, modulus, env, cands), n_train)
    n, matches = len(draws), sum(chosen.hits)
    offset, second = chosen.choice
    where: dict[str, Any] = {"offset": offset}
    if env.variable:
        where.update(strategy=second, strategy_params=list(env.strategies[second]), skip_sequence=chosen.skips)
    else:
        where["skip"] = second
    tried = env.choices()
    logs = [log10_binomial_tail(n, matches, env.chance(c, modulus)) for c in tried]
    top = max(logs)
    log_each = top + math.log10(sum(10 ** (v - top) for v in logs)) if top > -math.inf else -math.inf
    log_seeds = log_each + math.log10(SEED_SPACE)
    holdout = sum(chosen.hits[n_train:])
    n_holdout = n - n_train
    return {
        **where,
        "matches": matches,
        "draws": n,
        "train_matches": sum(chosen.hits[:n_train]),
        "train_draws": n_train,
        "holdout_matches": holdout,
        "holdout_draws": n_holdout,
        "match": matches / n if n else 0.0,
        "holdout_match": holdout / n_holdout if n_holdout else 0.0,
        "chance_per_draw": env.chance(chosen.choice, modulus),
        "candidates": len(cands),
        "choices": len(tried),
        "log10_chance_seeds": log_seeds,
        "reproduces": n_holdout > 0
        and holdout / n_holdout >= REPRODUCES_MATCH
        and log_seeds < math.log10(REPRODUCES_CHANCE),
    }


def luck(log10_seeds: float) -> str:
    """How many seeds of the 2**32 space would do as well by luck, for a person to read."""
    if log10_seeds == -math.inf:
        return "0"
    return f"10^{log10_seeds:.1f}" if log10_seeds < -3 else f"{10**log10_seeds:.3g}"


def verify_seed(
    generator: str,
    seed: int,
    draws: Sequence[int],
    n_train: int,
    modulus: int,
    *,
    offsets: Sequence[int],
    skips: Sequence[int] = (0,),
    strategies: Sequence[Sequence[int]] = (),
    mapping: str = "mod",
) -> dict[str, Any]:
    """`watcher verify`: `judge` over every choice of the envelope these ranges make (offsets with every skip, or
    with every variable-skip strategy when `strategies` is given; draws read through `mapping`, fixed skips)."""
    env = Envelope(tuple(offsets), tuple(skips), tuple((int(m), int(t)) for m, t in strategies), mapping)
    return judge(generator, seed, draws, n_train, modulus, env)
