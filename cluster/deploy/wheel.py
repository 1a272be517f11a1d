"""One wheel of the coordinator's own build, the same bytes for every rig.

The wheel is made from the files this interpreter imports (`files.package_files`, the selection pyproject's
packages.find and package-data make) and the installed distribution's metadata, not rebuilt from a source
tree: the coordinator may run from an editable checkout or from an installed wheel, and either way the rigs
get exactly what it runs. Once installed, a rig's files hash to the coordinator's build identity by
construction (`files.source_identity` walks them the same way).

Members are written in a fixed order with a fixed timestamp, so the same build always gives the same bytes
(and the same sha256); a wheel already in the cache for these bytes is reused, not written again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cluster.errors import ConfigError
from cluster.files import PACKAGE, PACKAGES, package_files, source_identity, write_bytes_atomic

TAG = "py3-none-any"
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no build-time stamp in the bytes
KEEP_BUILDS = 5  # wheels of older builds kept in the cache


@dataclass(frozen=True)
class Wheel:
    """The wheel deploy ships: its file name, bytes' sha256, the build identity it installs, its size."""

    name: str
    sha256: str
    identity: str
    size: int
    path: Path | None  # None in a dry run: nothing was written
    reused: bool


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _members() -> tuple[str, list[tuple[str, bytes, int]]]:
    """(version, [(name in the wheel, bytes, unix mode)]) of the coordinator's build, dist-info last."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"{PACKAGE} is not installed on the coordinator (no metadata); fix: pip install -e . (scripts/setup.sh)"
        ) from None
    version = dist.version
    members: list[tuple[str, bytes, int]] = []
    for package in PACKAGES:
        for arcname, path in package_files(package):
            mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            members.append((arcname, Path(path).read_bytes(), mode))
    info = f"{re.sub(r'[-_.]+', '_', PACKAGE)}-{version}.dist-info"
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    wheel_info = f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {TAG}\n"
    extra = {"METADATA": text, "WHEEL": wheel_info, "top_level.txt": "\n".join(PACKAGES) + "\n"}
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        extra["entry_points.txt"] = entry_points
    members += [(f"{info}/{name}", body.encode("utf-8"), 0o644) for name, body in extra.items()]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data, _ in members)
    members.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode(), 0o644))
    return version, members


def _zip(members: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in members:
            entry = zipfile.ZipInfo(name, date_time=EPOCH)
            entry.external_attr = (0o100000 | mode) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return buffer.getvalue()


def build_wheel(cache: Path | None) -> Wheel:
    """The wheel of this coordinator's build, from `cache` when these bytes are already there (cache None:
    a dry run, nothing written). Raises ConfigError when the sources change while it is being made."""
    identity = source_identity(PACKAGE, PACKAGES)
    version, members = _members()
    if identity is None or source_identity(PACKAGE, PACKAGES) != identity:
        raise ConfigError("watcher's source files changed while the wheel was being made; fix: run deploy again")
    data = _zip(members)
    digest = hashlib.sha256(data).hexdigest()
    name = f"{re.sub(r'[-_.]+', '_', PACKAGE)}-{version}-{TAG}.whl"
    if cache is None:
        return Wheel(name, digest, identity, len(data), None, reused=False)
    path = cache / digest[:16] / name
    reused = path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest
    if not reused:
        write_bytes_atomic(path, data)
        _prune(cache, keep=path.parent)
    return Wheel(name, digest, identity, len(data), path, reused)


def _prune(cache: Path, keep: Path) -> None:
    """Only the newest KEEP_BUILDS builds stay in the cache."""
    builds = sorted((p for p in cache.iterdir() if p.is_dir() and p != keep), key=lambda p: p.stat().st_mtime)
    for old in builds[: max(len(builds) - (KEEP_BUILDS - 1), 0)]:
        for file in old.iterdir():
            file.unlink(missing_ok=True)
        old.rmdir()
