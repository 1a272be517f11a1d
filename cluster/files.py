"""Files as every layer needs them: content hashes, atomic writes, and the installed version.

They live at the bottom so that preflight (comparing ramdisk copies), the run store, the pipeline's
outputs and the worker share one implementation: a crash never leaves a half-written file that looks
finished, and "which version is installed" is asked the same way on the coordinator and on a node.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PACKAGE = "rig-watcher"


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


@contextmanager
def atomic_file(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file written in pieces (a copy streamed from a node) that appears under `path` only whole:
    written to a temp file in the same directory, fsynced and renamed when the block ends; removed if it
    raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def installed_version(package: str = PACKAGE) -> str:
    """The installed distribution's version ("0+unknown" when run from a bare checkout); preflight compares
    the coordinator's with each node's, and every worker answer carries its own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "0+unknown"
