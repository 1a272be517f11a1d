"""The layout is the architecture (docs/architecture.md); these tests keep it true.

- import-linter's contracts (pyproject.toml): agents > pipeline > preflight > cluster, the layers inside
  cluster/ and pipeline/, and no cycles between siblings. A broken contract fails here naming the import.
- The engine and cluster/ know no workload: not one word of the PRNG vocabulary in them.
- A package's __init__ only re-exports.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKLOAD_WORDS = re.compile(r"\b(seeds?|survivors?|draws?|generators?)\b", re.IGNORECASE)
ENGINE_EXEMPT = ("prng", "steps")


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def engine_and_cluster_modules() -> list[Path]:
    engine = [
        p for p in (REPO / "pipeline").rglob("*.py") if p.relative_to(REPO / "pipeline").parts[0] not in ENGINE_EXEMPT
    ]
    return sorted([*engine, *(REPO / "cluster").rglob("*.py")])


def test_engine_and_cluster_name_no_workload_concept() -> None:
    offenders = []
    for path in engine_and_cluster_modules():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            # third-party names that merely share a word: an nvidia-smi field, the Optuna sampler's own seed
            text = line.replace("power.draw", "").replace("TPESampler(seed=", "")
            if WORKLOAD_WORDS.search(text):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_package_inits_only_reexport() -> None:
    for init in sorted(REPO.glob("*/**/__init__.py")):
        if ".venv" in init.parts or "tests" in init.parts:
            continue
        tree = ast.parse(init.read_text(encoding="utf-8"))
        logic = [
            type(n).__name__ for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.For | ast.If)
        ]
        assert not logic, f"{init.relative_to(REPO)} holds {logic}: move it to a module and re-export it"
