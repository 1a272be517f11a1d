"""Files as every layer needs them: content hashes, atomic writes, and the build identity.

They live at the bottom so that preflight (comparing ramdisk copies), the run store, the pipeline's
outputs and the worker share one implementation: a crash never leaves a half-written file that looks
finished, and "which build is installed" is asked the same way on the coordinator and on a node.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
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


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same directory, fsync, rename: readers never see half a file."""
    with atomic_file(path) as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


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


PACKAGES = ("agents", "cluster", "pipeline", "preflight")  # what pyproject's packages.find includes


def installed_version(package: str = PACKAGE) -> str:
    """This process's build identity: the installed distribution's version plus a digest of the source files
    it imports ("0.1.0+src.1a2b3c4d5e6f"; "0+unknown.src..." from a bare checkout). The version alone stayed
    0.1.0 while the code changed under it; the digest does not. Preflight compares the coordinator's with each
    node's, the slot worker's hello and every answer carry it. Cached: a process runs the code it loaded."""
    return _cached_identity(package)


@functools.cache
def _cached_identity(package: str) -> str:
    return source_identity(package, PACKAGES) or "0+unknown"


def identity_script() -> str:
    """Python source that defines `source_identity` and `package_files` with no import of ours, for a node to
    compute its own build identity the way this process computes its own (preflight's facts, deploy's probe):
    a node with an old build or none at all answers with what its files are, not what its code claims."""
    return inspect.getsource(package_files) + "\n\n" + inspect.getsource(source_identity)


# The two functions below are sent to nodes as source (identity_script): they import only the standard library.
def package_files(name: str) -> list[tuple[str, str]]:
    """(path inside an install, file on disk) of every file a wheel of package `name` holds, in a fixed order:
    the .py files and package data of each directory that is a package (has __init__.py), as pyproject's
    packages.find and package-data select them. Found the way `python -m` in the workdir finds it."""
    import importlib.util
    import os

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        return []
    base = os.path.dirname(os.path.dirname(spec.origin))
    out = []
    for folder, dirs, files in os.walk(os.path.dirname(spec.origin)):
        dirs[:] = sorted(d for d in dirs if os.path.isfile(os.path.join(folder, d, "__init__.py")))
        for file in sorted(files):
            if file.endswith((".py", ".json", ".yaml", ".sh")):
                path = os.path.join(folder, file)
                out.append((os.path.relpath(path, base).replace(os.sep, "/"), path))
    return out


def source_identity(dist: str, packages: tuple[str, ...]) -> str | None:
    """`dist`'s installed version plus the first 12 hex digits of a sha256 over the files of `packages`
    (each file's path and bytes), as a PEP 440 local version; None when none of the packages is found."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    found = False
    for name in packages:
        files = package_files(name)
        found = found or bool(files)
        digest.update(f"{name}:{len(files)}\0".encode())
        for arcname, path in files:
            with open(path, "rb") as fh:
                data = fh.read()
            digest.update(f"{arcname}\0{len(data)}\0".encode() + data)
    if not found:
        return None
    try:
        base = version(dist)
    except PackageNotFoundError:
        base = "0+unknown"
    return f"{base}{'.' if '+' in base else '+'}src.{digest.hexdigest()[:12]}"
