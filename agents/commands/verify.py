"""`watcher verify`: does one seed (say, from the operators' survivors files) reproduce the history that
pipeline.yaml names, under our generator definitions? Scored on the coordinator alone: no node is touched. The
choice (offset and skip or strategy: the most matches on the train draws) and the verdict are
pipeline.prng.verdict's, the same function that states `watcher run`'s verdict, so the two cannot disagree.

Exit 0 when it reproduces, 1 when it does not, 78 for bad input (one line naming the field), 2 for usage.
"""

from __future__ import annotations

import argparse

from cluster.errors import EXIT_FAILED, EXIT_OK, ConfigError
from pipeline.prng.data import RANGE_CAPS, DataSpec, History
from pipeline.prng.generators.reference import ALL_GENERATORS
from pipeline.prng.mappings import MAPPING_NAMES, mapping_error
from pipeline.spec import default_pipeline_path, load_pipeline, load_workload

SHOWN_SKIPS = 24  # of a variable-skip sequence, the first this many are printed


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help="score one seed against the history pipeline.yaml names (exit 0 reproduces, 1 does not, 78 bad input)",
    )
    p.add_argument("--generator", required=True, help="a generator or preset name, e.g. java_lcg, prng_cluster.lcg32")
    p.add_argument("--seed", required=True, type=int, help="the 32-bit seed")
    p.add_argument("--skip-mode", choices=("fixed", "variable"), default=None,
                   help="fixed skips or the operators' variable skips (default: data.skip_mode)")  # fmt: skip
    p.add_argument(
        "--offset", type=int, default=None, help="outputs before the first draw (default: data.offset_range)"
    )
    p.add_argument(
        "--skip", type=int, default=None, help="fixed mode: outputs before each draw (default: data.skip_range)"
    )
    p.add_argument("--mapping", default=None, choices=MAPPING_NAMES,
                   help="the library call that made the draws (default: data.mapping)")  # fmt: skip
    p.add_argument("--pipeline", default=None, help="pipeline.yaml (default: ./pipeline.yaml)")
    p.set_defaults(handler=run)


def _checked(args: argparse.Namespace, data: DataSpec) -> tuple[str, str, list[int], list[int]]:
    """(skip mode, mapping, offsets, skips) to try; ConfigError naming the option for a bad value."""
    if args.generator not in ALL_GENERATORS:
        raise ConfigError(f"--generator: unknown generator {args.generator!r}; use one of {', '.join(ALL_GENERATORS)}")
    if not 0 <= args.seed < 1 << 32:
        raise ConfigError(f"--seed: {args.seed} is not a 32-bit seed; use 0 <= seed < 2**32")
    mode = args.skip_mode or data.skip_mode
    mapping = args.mapping or data.mapping
    problem = mapping_error(mapping, args.generator, data.modulus, mode)
    if problem:
        raise ConfigError(f"--mapping/--generator: {problem}")
    high = RANGE_CAPS["offset_range"][1]
    if args.offset is not None and not 0 <= args.offset <= high:
        raise ConfigError(f"--offset: {args.offset} must be between 0 and {high}")
    if args.skip is not None and mode == "variable":
        raise ConfigError("--skip: a fixed skip has no meaning with --skip-mode variable; fix: drop it")
    high = RANGE_CAPS["skip_range"][1]
    if args.skip is not None and not 0 <= args.skip <= high:
        raise ConfigError(f"--skip: {args.skip} must be between 0 and {high}")
    offsets = [args.offset] if args.offset is not None else list(range(data.offset_range[0], data.offset_range[1] + 1))
    skips = [args.skip] if args.skip is not None else list(range(data.skip_range[0], data.skip_range[1] + 1))
    return mode, mapping, offsets, skips


def run(args: argparse.Namespace) -> int:
    from pipeline.prng.data import split
    from pipeline.prng.verdict import luck, verify_seed
    from pipeline.prng.workload import PrngWorkload

    spec = load_pipeline(args.pipeline or default_pipeline_path())
    work = load_workload(spec)
    if not isinstance(work, PrngWorkload):
        raise ConfigError(
            f"workload: watcher verify needs the PRNG workload; pipeline.yaml names {type(work).__name__}"
        )
    data = work.data
    mode, mapping, offsets, skips = _checked(args, data)
    history = _session(work.history, data)
    train, _holdout = split(history, data.holdout_fraction)
    strategies = [list(s) for s in data.strategies] if mode == "variable" else []
    got = verify_seed(args.generator, args.seed, history.draws, len(train), data.modulus, offsets=offsets,
                      skips=skips, strategies=strategies, mapping=mapping)  # fmt: skip
    called = "" if mapping == "mod" else f", draws made by {mapping}"
    print(f"{args.generator} seed {args.seed} against {history.source} ({got['draws']} draws, session "
          f"{history.session}, modulus {data.modulus}{called}), {mode} skips")  # fmt: skip
    if mode == "variable":
        misses, tolerance = got["strategy_params"]
        shown = got["skip_sequence"][:SHOWN_SKIPS]
        more = " ..." if len(got["skip_sequence"]) > SHOWN_SKIPS else ""
        where = f"offset {got['offset']}, strategy {got['strategy']} ({misses} misses / tolerance {tolerance})"
        print(f"skips: {' '.join(map(str, shown))}{more}")
    else:
        where = f"offset {got['offset']}, skip {got['skip']}"
    split_at = (
        f"train {got['train_matches']}/{got['train_draws']}, holdout {got['holdout_matches']}/{got['holdout_draws']}"
    )
    print(f"best: {where}: {got['matches']}/{got['draws']} draws match ({got['match']:.0%}; {split_at})")
    expected_matches = got["draws"] * got["chance_per_draw"]
    by_luck = f"expected to match {got['matches']} or more by luck over the {got['choices']} choice(s) tried: "
    print(
        f"chance: a random seed matches {expected_matches:.2f} of {got['draws']} draws; seeds of the 2^32 space "
        f"{by_luck}{luck(got['log10_chance_seeds'])}"
    )
    print(f"reproduces: {'yes' if got['reproduces'] else 'no'}")
    return EXIT_OK if got["reproduces"] else EXIT_FAILED


def _session(history: History, data: DataSpec) -> History:
    from pipeline.prng.data import select_session

    return select_session(history, data.session)
