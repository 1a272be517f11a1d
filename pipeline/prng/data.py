"""The reference workload's data: the `data:` section of pipeline.yaml (DataSpec) and the draw history it
names: load, validate (one line naming the entry and field), keep one session's draws (`data.session`), split
into train and holdout. `data.mapping` (pipeline.prng.mappings) says which library call made the draws; the
draws lie in [data.draw_low, data.draw_low + data.modulus) and are held less draw_low."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from cluster.errors import ConfigError
from cluster.loads import json_unique

# (most values, highest value) of the scanned envelopes: every offset and skip multiplies the work
RANGE_CAPS = {"offset_range": (4096, 1 << 20), "skip_range": (256, 4096)}
ALL_SESSIONS = "both"  # data.session: every draw, whatever its session
SKIP_MODES = ("fixed", "variable")
# The operators' five hybrid presets (max consecutive misses, skip tolerance), the same tuple as
# pipeline.prng.sieve.spec.PRNG_CLUSTER_STRATEGIES (kept here so loading pipeline.yaml imports no sieve code).
DEFAULT_STRATEGIES: tuple[tuple[int, int], ...] = ((3, 5), (10, 20), (5, 5), (7, 10), (20, 50))
# Fields added after the first release: left out of the dump (and so of every output's input hash) while they
# hold their defaults, so a pipeline.yaml that does not use them keeps its outputs and studies.
_LATER_FIELDS = {
    "session": ALL_SESSIONS,
    "skip_mode": "fixed",
    "strategies": DEFAULT_STRATEGIES,
    "mapping": "mod",
    "draw_low": 0,
}


class DataSpec(BaseModel):
    """The data set and the generator family the reference pipeline searches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: Annotated[str, Field(min_length=1)] = "data/history.json"
    generator: str = "java_lcg"
    # Strict* throughout: `modulus: "1000"` or `true` is refused, never coerced (tuples stay lax for YAML lists)
    modulus: Annotated[StrictInt, Field(ge=2, le=1 << 31)] = 1000
    holdout_fraction: Annotated[StrictFloat, Field(gt=0, lt=0.9)] = 0.2
    seed_range: tuple[StrictInt, StrictInt] = (0, 1 << 24)
    offset_range: tuple[StrictInt, StrictInt] = (0, 15)
    skip_range: tuple[StrictInt, StrictInt] = (0, 3)
    # "both" (every draw) or one session name the history uses; checked against the history when it is loaded
    session: Annotated[str, Field(min_length=1, max_length=64)] = ALL_SESSIONS
    # fixed: one skip per survivor from skip_range; variable: each draw's skip searched with `strategies`
    # ([max consecutive misses, skip tolerance] pairs, the operators' hybrid semantics; skip_range unused)
    skip_mode: str = "fixed"
    strategies: Annotated[tuple[tuple[StrictInt, StrictInt], ...], Field(min_length=1, max_length=32)] = (
        DEFAULT_STRATEGIES
    )
    # how the library turns the generator's outputs into one draw (pipeline.prng.mappings: mod, java_next_int,
    # java_next_double, numpy_randint, python_randrange, php_mt_rand); offsets and skips then count library calls
    mapping: str = "mod"
    # the smallest value a draw can take: the history's draws lie in [draw_low, draw_low + modulus) (e.g. 1 for
    # mt_rand(1, 1000)); it is subtracted when the history is loaded, so every step compares values in [0, modulus)
    draw_low: Annotated[StrictInt, Field(ge=-(1 << 31), le=1 << 32)] = 0

    @field_validator("skip_mode")
    @classmethod
    def _skip_mode(cls, value: str, info: ValidationInfo) -> str:
        from pipeline.prng.mappings.library import generator_error

        if value not in SKIP_MODES:
            raise ValueError(f"must be one of {', '.join(SKIP_MODES)}; got {value!r}")
        problem = generator_error(info.data["generator"], value) if "generator" in info.data else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("mapping")
    @classmethod
    def _mapping(cls, value: str, info: ValidationInfo) -> str:
        """Known, and applicable to the generator, modulus and skip mode (checked here, at load)."""
        from pipeline.prng.mappings.library import mapping_error

        got = info.data
        problem = mapping_error(value, got.get("generator"), got.get("modulus"), got.get("skip_mode", "fixed"))
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, value: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        for i, (misses, tolerance) in enumerate(value):
            if not 1 <= misses <= 2048 or not 0 <= tolerance <= 1000:
                raise ValueError(
                    f"[{i}] = [{misses}, {tolerance}]: need [max_misses, tolerance] with 1 <= max_misses <= 2048 "
                    "and 0 <= tolerance <= 1000"
                )
        if len(set(value)) != len(value):
            raise ValueError("lists a strategy twice; fix: drop the duplicate")
        return value

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        for name, default in _LATER_FIELDS.items():
            if getattr(self, name) == default:
                out.pop(name, None)
        return out

    @property
    def variable(self) -> bool:
        return self.skip_mode == "variable"

    @field_validator("generator")
    @classmethod
    def _known(cls, value: str) -> str:
        from pipeline.prng.generators.reference import ALL_GENERATORS

        if value not in ALL_GENERATORS:
            raise ValueError(f"unknown generator {value!r}; use one of {', '.join(ALL_GENERATORS)}")
        return value

    @field_validator("seed_range", "offset_range", "skip_range")
    @classmethod
    def _range(cls, value: tuple[int, int], info: ValidationInfo) -> tuple[int, int]:
        lo, hi = value
        if lo < 0 or hi < lo:
            raise ValueError(f"must be [low, high] with 0 <= low <= high; got [{lo}, {hi}]")
        if info.field_name == "seed_range" and (hi > 1 << 32 or lo == hi):
            raise ValueError(f"must be a non-empty [start, end) inside [0, 2**32]; got [{lo}, {hi}]")
        width_cap, high_cap = RANGE_CAPS.get(str(info.field_name), (1 << 33, 1 << 32))
        if hi - lo + 1 > width_cap or hi > high_cap:
            raise ValueError(
                f"[{lo}, {hi}] is too wide: at most {width_cap} values, none above {high_cap} (every value is "
                "scanned for every seed); fix: narrow it"
            )
        return value


@dataclass(frozen=True)
class History:
    draws: tuple[int, ...]
    sessions: tuple[str, ...]
    dates: tuple[str, ...]
    source: str
    session: str = ALL_SESSIONS  # which session's draws these are ("both": the whole file)

    def __len__(self) -> int:
        return len(self.draws)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.draws).encode()).hexdigest()[:16]

    def session_names(self) -> tuple[str, ...]:
        """The session names this history uses, in order of first appearance."""
        return tuple(dict.fromkeys(self.sessions))


def select_session(history: History, session: str = ALL_SESSIONS) -> History:
    """The draws of one session, in time order ("both": all of them); ConfigError naming data.session when the
    history has no such session. Selecting the session a history already holds returns it unchanged."""
    if session == history.session:
        return history
    if history.session != ALL_SESSIONS:
        raise ConfigError(f"data.session: {history.source} already holds only session {history.session!r}")
    if session == ALL_SESSIONS:
        return history
    names = history.session_names()
    if session not in names:
        raise ConfigError(
            f"data.session: {session!r} is not a session of {history.source} (it has {', '.join(names)}); "
            f"fix: use {ALL_SESSIONS} or one of those"
        )
    keep = [i for i, s in enumerate(history.sessions) if s == session]
    return History(
        tuple(history.draws[i] for i in keep),
        tuple(history.sessions[i] for i in keep),
        tuple(history.dates[i] for i in keep),
        history.source,
        session,
    )


HISTORY_FIX = "fix: point data.history in pipeline.yaml at a JSON list of {date, session, draw}"
MAX_HISTORY_BYTES = 256 << 20  # far above any real history; a larger file is a mistake (a wrong path, a device)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string; got {value!r}")
    return value


def _date(value: Any, where: str) -> dt.datetime:
    """An ISO 8601 date (2024-01-31, or with a time: 2024-01-31T12:00); compared as a moment, naive ones as UTC."""
    text = _text(value, where)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{where} {text!r} is not an ISO date; fix: write it as YYYY-MM-DD") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def parse_history(data: Any, source: str, modulus: int = 1000, low: int = 0) -> History:
    """Draws lie in [low, low + modulus) (data.draw_low, data.modulus); they are kept as draw - low, the value
    the mapping gives, so nothing downstream knows about low. Each entry is checked before it is believed:
    strict types (a draw is an int, never a bool or a string; date and session are strings), one entry per
    (date, session), and dates that never go backwards: the draws are used in file order, so a repeated or
    misplaced entry would shift every later draw and make the planted seed unfindable."""
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: a history is a non-empty JSON list of {{date, session, draw}} entries")
    draws, sessions, dates = [], [], []
    seen: dict[tuple[dt.datetime, str], int] = {}
    last: dt.datetime | None = None
    for i, entry in enumerate(data):
        where = f"{source}: entry [{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} is not an object; fix: use {{date, session, draw}}")
        for key in ("date", "session", "draw"):
            if key not in entry:
                raise ConfigError(f"{where}.{key} is missing; fix: add it")
        draw = entry["draw"]
        if isinstance(draw, bool) or not isinstance(draw, int) or not low <= draw < low + modulus:
            fix = (
                f"; fix: data.draw_low ({low}) and data.modulus ({modulus}) set the range [draw_low, draw_low+modulus)"
                if isinstance(draw, int) and not isinstance(draw, bool)
                else ""
            )
            raise ConfigError(f"{where}.draw must be an integer {low}-{low + modulus - 1}; got {draw!r}{fix}")
        moment = _date(entry["date"], f"{where}.date")
        session = _text(entry["session"], f"{where}.session")
        if (moment, session) in seen:
            raise ConfigError(
                f"{where} repeats entry [{seen[moment, session]}] (date {entry['date']}, session {session}): "
                "every draw would shift by one; fix: remove the duplicate"
            )
        if last is not None and moment < last:
            raise ConfigError(
                f"{where}.date {entry['date']} is before entry [{i - 1}]'s date {dates[-1]}: draws are used in "
                "file order; fix: sort the history oldest first"
            )
        seen[moment, session], last = i, moment
        draws.append(draw - low)
        sessions.append(session)
        dates.append(entry["date"])
    return History(tuple(draws), tuple(sessions), tuple(dates), source)


def _read_history(path: Path) -> str:
    """The file's text, refused before it is opened unless it is a regular file under MAX_HISTORY_BYTES (a FIFO
    would block the read, a device such as /dev/zero never ends)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: history file not found; {HISTORY_FIX}") from None
    except OSError as err:
        raise ConfigError(f"{path}: history cannot be read ({err.strerror}); {HISTORY_FIX}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: history is a directory, not a file; {HISTORY_FIX}")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: history is not a regular file (a pipe, socket or device); {HISTORY_FIX}")
    if info.st_size > MAX_HISTORY_BYTES:
        raise ConfigError(
            f"{path}: history is {info.st_size / (1 << 20):.0f} MiB, above the {MAX_HISTORY_BYTES >> 20} MiB a "
            f"history may have; {HISTORY_FIX}"
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: history cannot be read ({err.strerror}); {HISTORY_FIX}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: history is not UTF-8 text (byte {err.start}); {HISTORY_FIX}") from None


def load_history(path: str | Path, modulus: int = 1000, session: str = ALL_SESSIONS, low: int = 0) -> History:
    """The history file's draws (less `low`, data.draw_low), only `session`'s unless it is "both". The one loader
    every command goes through (`watcher run`, `--dry-run`, `preflight check`, `watcher verify`)."""
    path = Path(path)
    text = _read_history(path)
    if not text.strip():
        raise ConfigError(f"{path}: history file is empty; {HISTORY_FIX}")
    data = json_unique(text, str(path), HISTORY_FIX, item="entry")
    return select_session(parse_history(data, str(path), modulus, low), session)


def split(history: History, holdout_fraction: float) -> tuple[list[int], list[int]]:
    """Chronological split: the newest draws are the holdout, never seen by steps 1-2.5."""
    n_holdout = max(1, round(len(history) * holdout_fraction))
    if len(history) - n_holdout < 8:
        raise ConfigError(f"{history.source}: {len(history)} draws leave too few for training; need >= 8 + holdout")
    return list(history.draws[:-n_holdout]), list(history.draws[-n_holdout:])
