"""Fixtures for integration tests: fake rigs as real sshd processes on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fakerig


@pytest.fixture
def rigs() -> Iterator[Callable[..., list[fakerig.FakeRig]]]:
    """`rigs(n, gpus=12)` starts n fake rigs; all of them are stopped at teardown, even on failure."""
    reason = fakerig.available()
    if reason:
        pytest.skip(reason)
    factory = fakerig.RigFactory(fakerig.private_base("rigs"))
    try:
        yield factory.make
    finally:
        factory.stop_all(remove=True)
