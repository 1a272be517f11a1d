"""The table bench/gpu_check.sh ends with: seeds/s per family of the C kernels on the GPU, next to the torch path on
the same GPU and numba on the host's cores, from the JSON lines of bench/sieve.py and bench/mappings.py.

    python bench/gpu_table.py FILE.jsonl ...

A row whose check failed (planted seed not found, survivors not the reference's) is marked FAILED, and the exit
status is 1 when any is.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = (("cuda", "fast", "C kernels (GPU)"), ("cuda", "fallback", "torch (GPU)"), ("cpu", "fast", "numba (CPU)"))


def key(row: dict) -> tuple[str, ...]:
    if "mapping" in row:
        return ("mapping", row["mapping"], row["generator"], str(row["modulus"]))
    if row.get("mode") == "variable":
        return ("variable", row["generator"])
    return ("fixed", row["generator"], f"skips={row['skips']}")


def passed(row: dict) -> bool:
    return bool(row.get("planted_found", True) and row.get("verified", True) and row.get("oracle_agrees", True))


def rate(value: float) -> str:
    return f"{value / 1e9:8.3f} G/s" if value >= 1e9 else f"{value / 1e6:8.2f} M/s"


def main(paths: list[str]) -> int:
    table: dict[tuple[str, ...], dict[tuple[str, str], dict]] = defaultdict(dict)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                if "seeds_per_s" in row and "path" in row:
                    device = "cpu" if row.get("device", "cpu") == "cpu" else "cuda"
                    table[key(row)][(device, row["path"])] = row
    ok = True
    print(f"{'':58s}" + "".join(f"{title:>18s}" for _, _, title in COLUMNS) + "   C / torch")
    for k in sorted(table):
        cells, rates = [], {}
        for device, path, _ in COLUMNS:
            row = table[k].get((device, path))
            if row is None:
                cells.append(f"{'-':>18s}")
                continue
            rates[(device, path)] = row["seeds_per_s"]
            cells.append(f"{rate(row['seeds_per_s']):>12s}" + ("      " if passed(row) else " FAIL "))
            ok &= passed(row)
        gpu, torch = rates.get(("cuda", "fast")), rates.get(("cuda", "fallback"))
        ratio = f"{gpu / torch:10.1f}x" if gpu and torch else ""
        print(f"{' '.join(k):58s}" + "".join(cells) + ratio)
    print("every row verified against the reference" if ok else "FAILED: a row above did not verify")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
