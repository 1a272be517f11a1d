"""The reference workload's data: the `data:` section of pipeline.yaml (DataSpec) and the draw history it
names: load, validate (one line naming the entry and field), split into train and holdout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cluster.errors import ConfigError


class DataSpec(BaseModel):
    """The data set and the generator family the reference pipeline searches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: str = "data/history.json"
    generator: str = "java_lcg"
    modulus: Annotated[int, Field(ge=2)] = 1000
    holdout_fraction: Annotated[float, Field(gt=0, lt=0.9)] = 0.2
    seed_range: tuple[int, int] = (0, 1 << 24)
    offset_range: tuple[int, int] = (0, 15)
    skip_range: tuple[int, int] = (0, 3)

    @model_validator(mode="after")
    def _ranges(self) -> DataSpec:
        for name in ("seed_range", "offset_range", "skip_range"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi < lo:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high; got [{lo}, {hi}]")
        if self.seed_range[1] > 1 << 32 or self.seed_range[0] == self.seed_range[1]:
            raise ValueError("seed_range must be a non-empty [start, end) inside [0, 2**32]")
        return self


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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: history file not found; fix: set `history:` in pipeline.yaml") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    return parse_history(data, str(path), modulus)


def split(history: History, holdout_fraction: float) -> tuple[list[int], list[int]]:
    """Chronological split: the newest draws are the holdout, never seen by steps 1-2.5."""
    n_holdout = max(1, round(len(history) * holdout_fraction))
    if len(history) - n_holdout < 8:
        raise ConfigError(f"{history.source}: {len(history)} draws leave too few for training; need >= 8 + holdout")
    return list(history.draws[:-n_holdout]), list(history.draws[-n_holdout:])
