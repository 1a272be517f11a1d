"""Step outputs as luigi would have them: complete only when they exist, parse, carry `status: complete`
and were made from the current inputs. Written to a temp file and renamed, so a crash never leaves a
half-written file that looks finished."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cluster.errors import StepError
from cluster.files import write_json_atomic

ENVELOPE_VERSION = 1


def write_output(
    path: str | Path, schema: str, data: Any, input_hashes: Mapping[str, str], status: str = "complete"
) -> Path:
    envelope = {
        "schema": schema,
        "version": ENVELOPE_VERSION,
        "status": status,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input_hashes": dict(input_hashes),
        "data": data,
    }
    return write_json_atomic(path, envelope)


def read_output(path: str | Path, schema: str, input_hashes: Mapping[str, str] | None = None) -> Any:
    """The data of a complete, current output, or StepError naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise StepError(f"{path}: missing; fix: run the step that makes it (watcher run --from-step N)")
    try:
        envelope = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StepError(f"{path}: corrupted ({err}); fix: delete it and rerun the step that makes it") from None
    if not isinstance(envelope, dict) or envelope.get("schema") != schema or "data" not in envelope:
        raise StepError(f"{path}: not a {schema} output; fix: delete it and rerun the step that makes it")
    if envelope.get("status") != "complete":
        raise StepError(
            f"{path}: status is {envelope.get('status')!r}, not 'complete' (left by a crashed run?); "
            "fix: rerun the step that makes it"
        )
    if input_hashes is not None:
        stale = [k for k, v in input_hashes.items() if envelope.get("input_hashes", {}).get(k) != v]
        if stale:
            raise StepError(f"{path}: made from other inputs ({', '.join(stale)} changed); fix: rerun its step")
    return envelope["data"]


def check_complete(path: str | Path, input_hashes: Mapping[str, str] | None = None) -> None:
    """Like read_output for any schema: an output a later step may rely on, or StepError naming it."""
    path = Path(path)
    try:
        schema = json.loads(path.read_text(encoding="utf-8")).get("schema", "")
    except FileNotFoundError:
        schema = ""
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise StepError(f"{path}: corrupted; fix: delete it and rerun the step that makes it") from None
    read_output(path, schema or "(unknown)", input_hashes)
