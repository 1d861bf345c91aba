"""Strict mapping of TOML tables onto frozen config dataclasses.

Unknown keys and wrong types raise `ScenarioError` naming the key path and the file.
Accepted field types: float (ints accepted), int, bool, str, tuple[float|int|str, ...]
(fixed length or `...`), a nested dataclass, and tuple[Dataclass, ...].
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ScenarioError(ValueError):
    """A scenario file or table is malformed."""


def from_table(cls: type[T], table: Any, where: str, source: str) -> T:
    """Build dataclass `cls` from a TOML table; `where` is the key path used in messages."""
    if not isinstance(table, dict):
        raise ScenarioError(f"{source}: {where or 'top level'} must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ScenarioError(f"{source}: unknown key '{path}' (allowed: {', '.join(names)})")
        kwargs[key] = _convert(hints[key], value, path, source)
    try:
        return cls(**kwargs)
    except ScenarioError:
        raise
    except (ValueError, TypeError) as exc:
        raise ScenarioError(f"{source}: [{where or 'top level'}] {exc}") from None


def _convert(tp: Any, value: Any, path: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_table(tp, value, path, source)
    if origin is tuple:
        return _convert_tuple(tp, value, path, source)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(args[0], value, path, source)
    return _scalar(tp, value, path, source)


def _convert_tuple(tp: Any, value: Any, path: str, source: str) -> tuple:
    if not isinstance(value, list):
        raise ScenarioError(f"{source}: '{path}' must be an array, got {value!r}")
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{path}[{i}]", source) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ScenarioError(f"{source}: '{path}' must have {len(args)} elements, got {len(value)}")
    return tuple(_convert(a, v, f"{path}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))


def _scalar(tp: Any, value: Any, path: str, source: str) -> Any:
    bad = ScenarioError(f"{source}: '{path}' = {value!r} must be of type {getattr(tp, '__name__', tp)}")
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(float(value)):
            raise ScenarioError(f"{source}: '{path}' = {value!r} must be finite")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise ScenarioError(f"{source}: '{path}' has an unsupported field type {tp!r}")
