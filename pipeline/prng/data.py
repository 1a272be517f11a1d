"""The reference workload's data: the `data:` section of pipeline.yaml (DataSpec) and the draw history it
names: load, validate (one line naming the entry and field), split into train and holdout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator

from cluster.errors import ConfigError

# (most values, highest value) of the scanned envelopes: every offset and skip multiplies the work
RANGE_CAPS = {"offset_range": (4096, 1 << 20), "skip_range": (256, 4096)}


class DataSpec(BaseModel):
    """The data set and the generator family the reference pipeline searches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: Annotated[str, Field(min_length=1)] = "data/history.json"
    generator: str = "java_lcg"
    modulus: Annotated[int, Field(ge=2, le=1 << 31)] = 1000
    holdout_fraction: Annotated[float, Field(gt=0, lt=0.9)] = 0.2
    seed_range: tuple[StrictInt, StrictInt] = (0, 1 << 24)
    offset_range: tuple[StrictInt, StrictInt] = (0, 15)
    skip_range: tuple[StrictInt, StrictInt] = (0, 3)

    @field_validator("generator")
    @classmethod
    def _known(cls, value: str) -> str:
        from pipeline.prng.generators import GENERATORS

        if value not in GENERATORS:
            raise ValueError(f"unknown generator {value!r}; use one of {', '.join(GENERATORS)}")
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

    def __len__(self) -> int:
        return len(self.draws)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.draws).encode()).hexdigest()[:16]


def parse_history(data: Any, source: str, modulus: int = 1000) -> History:
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{source}: a history is a non-empty JSON list of {{date, session, draw}} entries")
    draws, sessions, dates = [], [], []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: entry [{i}] is not an object; fix: use {{date, session, draw}}")
        for key in ("date", "session", "draw"):
            if key not in entry:
                raise ConfigError(f"{source}: entry [{i}].{key} is missing; fix: add it")
        draw = entry["draw"]
        if isinstance(draw, bool) or not isinstance(draw, int) or not 0 <= draw < modulus:
            raise ConfigError(f"{source}: entry [{i}].draw must be an integer 0-{modulus - 1}; got {draw!r}")
        draws.append(draw)
        sessions.append(str(entry["session"]))
        dates.append(str(entry["date"]))
    return History(tuple(draws), tuple(sessions), tuple(dates), source)


def load_history(path: str | Path, modulus: int = 1000) -> History:
    path = Path(path)
    fix = "fix: point data.history in pipeline.yaml at a JSON list of {date, session, draw}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: history file not found; {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: history is a directory, not a file; {fix}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: history is not UTF-8 text (byte {err.start}); {fix}") from None
    except OSError as err:
        raise ConfigError(f"{path}: history cannot be read ({err.strerror}); {fix}") from None
    if not text.strip():
        raise ConfigError(f"{path}: history file is empty; {fix}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}; {fix}") from None
    return parse_history(data, str(path), modulus)


def split(history: History, holdout_fraction: float) -> tuple[list[int], list[int]]:
    """Chronological split: the newest draws are the holdout, never seen by steps 1-2.5."""
    n_holdout = max(1, round(len(history) * holdout_fraction))
    if len(history) - n_holdout < 8:
        raise ConfigError(f"{history.source}: {len(history)} draws leave too few for training; need >= 8 + holdout")
    return list(history.draws[:-n_holdout]), list(history.draws[-n_holdout:])
