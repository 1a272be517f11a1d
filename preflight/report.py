"""Preflight results: one CheckResult per check and node, ok|warn|fail, each failure with a remedy."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cluster.errors import EXIT_OK, EXIT_PREFLIGHT

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class CheckResult:
    check: str
    node: str
    status: Status
    message: str
    remedy: str = ""
    target: str = ""  # what was checked on the node: a GPU, a file

    def line(self) -> str:
        where = f"{self.node}{f' {self.target}' if self.target else ''}"
        return f"{where}: {self.message}" + (f": {self.remedy}" if self.remedy and self.status != "ok" else "")


@dataclass
class PreflightReport:
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    step: float | None = None

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PREFLIGHT

    def failure_lines(self) -> list[str]:
        return [r.line() for r in self.failures]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "step": self.step,
            "seconds": round(self.seconds, 3),
            "results": [asdict(r) for r in self.results],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)
