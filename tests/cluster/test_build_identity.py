"""The build identity: the installed version plus a digest of the source files the process imports. It
changes with one line of code and with nothing outside the build; slot workers of another build are refused."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.files import PACKAGES, installed_version, package_files, source_identity
from cluster.protocol import version_older


@pytest.fixture
def toy_package(tmp_path: Path) -> Iterator[Path]:
    """A package `toywatch` on sys.path: a module, package data, a sub-package and a folder that is not one."""
    root = tmp_path / "toywatch"
    (root / "sub").mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "__init__.py").write_text("")
    (root / "core.py").write_text("VALUE = 1\n")
    (root / "table.json").write_text("{}\n")
    (root / "README.md").write_text("not in a wheel\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "notes" / "scratch.py").write_text("# no __init__.py here: not a package\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield root
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("toywatch")]:
            del sys.modules[name]


def test_package_files_select_what_a_wheel_holds(toy_package: Path) -> None:
    names = [arcname for arcname, _ in package_files("toywatch")]
    assert names == ["toywatch/__init__.py", "toywatch/core.py", "toywatch/table.json", "toywatch/sub/__init__.py"]
    assert package_files("no_such_package_here") == []


def test_the_identity_changes_with_one_line_of_code_and_only_then(toy_package: Path) -> None:
    first = source_identity("no-such-dist", ("toywatch",))
    assert first is not None and first.startswith("0+unknown.src.") and len(first.rsplit(".", 1)[1]) == 12
    (toy_package / "README.md").write_text("changed, but not part of the build\n")
    (toy_package / "notes" / "scratch.py").write_text("# neither is this\n")
    assert source_identity("no-such-dist", ("toywatch",)) == first
    with (toy_package / "core.py").open("a") as fh:
        fh.write("# one more line\n")
    second = source_identity("no-such-dist", ("toywatch",))
    assert second != first
    assert source_identity("no-such-dist", ("no_such_package_here",)) is None


def test_this_process_has_a_build_identity_with_the_installed_version() -> None:
    identity = installed_version()
    assert "+src." in identity or ".src." in identity
    assert identity == source_identity("rig-watcher", PACKAGES)


@pytest.mark.parametrize(
    ("worker", "coordinator", "refused"),
    [
        ("0.1.0+src.aaaaaaaaaaaa", "0.1.0+src.aaaaaaaaaaaa", False),
        ("0.1.0+src.aaaaaaaaaaaa", "0.1.0+src.bbbbbbbbbbbb", True),  # another build of the same version
        ("0.1.0+src.cccccccccccc", "0.1.0+src.bbbbbbbbbbbb", True),  # whichever sorts first
        ("0.1.0", "0.1.0+src.bbbbbbbbbbbb", True),  # an install from before build identities
        ("0.0.9+src.aaaaaaaaaaaa", "0.1.0+src.bbbbbbbbbbbb", True),
        ("0.2.0+src.aaaaaaaaaaaa", "0.1.0+src.bbbbbbbbbbbb", False),  # newer workers speak the protocol
    ],
)
def test_slot_workers_of_another_build_are_refused(worker: str, coordinator: str, refused: bool) -> None:
    assert version_older(worker, coordinator) is refused
