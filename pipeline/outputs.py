"""Step outputs as luigi would have them: complete only when they exist, parse, carry `status: complete`
and were made from the current inputs. Written to a temp file and renamed, so a crash never leaves a
half-written file that looks finished."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cluster.errors import StepError

ENVELOPE_VERSION = 1


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write to a temp file in the same directory, fsync, rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, payload: Any, *, style: str = "indent") -> Path:
    """JSON, atomically. style: "indent" (human-readable), "compact" (worker results), "records" (a list,
    one record a line: diffable, and what data/history.json looks like byte for byte)."""
    if style == "records" and isinstance(payload, list):
        text = "[\n" + ",\n".join(json.dumps(r) for r in payload) + "\n]\n"
    elif style == "compact":
        text = json.dumps(payload, separators=(",", ":"), default=str)
    else:
        text = json.dumps(payload, indent=1, default=str) + "\n"
    return write_text_atomic(path, text)


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
