"""Preflight: gather facts from every node (gather.py), evaluate them with pure functions (evaluate.py),
and report (report.py); check.py runs the whole gate. The console script is agents/commands/preflight.py."""

from preflight.check import run_preflight
from preflight.report import CheckResult, PreflightReport

__all__ = ["CheckResult", "PreflightReport", "run_preflight"]
