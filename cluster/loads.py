"""JSON and YAML parsing that refuses duplicate keys.

Both parsers keep the last of two equal keys without a word, so `{"port": 22, "port": 2222}` or a
pipeline.yaml listing a key twice would be believed as whichever came last, and a later error would blame
another field. Every file an operator writes (distributed_config.json, pipeline.yaml, a workload's data
files) is read through these instead: a repeated key is a ConfigError naming the key (and, for YAML, its line).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from cluster.errors import ConfigError


class _Duplicate(ValueError):
    def __init__(self, key: object, where: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.where = where


def json_unique(text: str, source: str, fix: str = "", *, item: str | None = None) -> Any:
    """json.loads, with a repeated key in any object an error naming it; invalid JSON names line and column.
    item: what the file's objects are called when it is a flat list of them (the history's "entry"): the
    message then names the object by its index, objects being closed in file order."""
    tail = f"; {fix}" if fix else ""
    closed = 0

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal closed
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise _Duplicate(key, f"{item} [{closed}]" if item else "one object")
            out[key] = value
        closed += 1
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except _Duplicate as dup:
        raise ConfigError(f"{source}: {dup.where} has the key {dup.key!r} twice; fix: keep only one of them") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}{tail}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose mappings refuse a key they already hold."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if repeated:
                raise _Duplicate(key, f" at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def yaml_unique(text: str, source: str) -> Any:
    """yaml.safe_load, with a repeated key in any mapping an error naming it and its line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except _Duplicate as dup:
        raise ConfigError(
            f"{source}: duplicate key {dup.key!r}{dup.where}; fix: keep only one (YAML would silently use the last)"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
