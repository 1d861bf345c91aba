"""Argument validation with one-line errors that name the argument, value and allowed range."""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from .errors import InvalidArgumentError, OutOfRangeError

Range = tuple[float, float]

_UNITS = {"_m": " m", "_s": " s", "_a": " A", "_v": " V", "_rad": " rad", "_px": " px", "_hz": " Hz"}


def unit_of(name: str) -> str:
    """Unit suffix for messages, read from the argument name (`fov_m` -> ' m')."""
    for suffix, unit in _UNITS.items():
        if name.endswith(suffix):
            return unit
    return ""


def _range_text(name: str, allowed: Range) -> str:
    return f"[{allowed[0]:.6g}, {allowed[1]:.6g}]{unit_of(name)}"


def real(name: str, value: object, allowed: Range | None = None) -> float:
    """Return `value` as float; raise if it is not a finite real number inside `allowed`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        span = f" in {_range_text(name, allowed)}" if allowed else ""
        raise InvalidArgumentError(
            f"{name} = {value!r} ({type(value).__name__}): must be a real number{span}"
        )
    v = float(value)
    if not math.isfinite(v):
        span = f" in {_range_text(name, allowed)}" if allowed else ""
        raise InvalidArgumentError(f"{name} = {v}: must be a finite number{span}")
    if allowed is not None and not (allowed[0] <= v <= allowed[1]):
        raise OutOfRangeError(
            f"{name} = {v:.6g}{unit_of(name)} is outside the allowed range {_range_text(name, allowed)}"
        )
    return v


def integer(name: str, value: object, allowed: tuple[int, int]) -> int:
    """Return `value` as int; raise if it is not an integer inside `allowed` (inclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidArgumentError(
                f"{name} = {value!r} ({type(value).__name__}): must be an integer in "
                f"[{allowed[0]}, {allowed[1]}]"
            )
    v = int(value)
    if not (allowed[0] <= v <= allowed[1]):
        raise OutOfRangeError(
            f"{name} = {v} is outside the allowed range [{allowed[0]}, {allowed[1]}]"
        )
    return v


def choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """Return `value` if it is one of the allowed strings."""
    options = tuple(allowed)
    if not isinstance(value, str) or value not in options:
        raise InvalidArgumentError(f"{name} = {value!r}: must be one of {', '.join(options)}")
    return value


def pair(name: str, value: object, allowed: Range | None = None) -> tuple[float, float]:
    """Return a 2-tuple of validated floats (e.g. stigmator or beam shift)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"{name} = {value!r}: must be a pair of numbers (x, y)")
    items = tuple(value)
    if len(items) != 2:
        raise InvalidArgumentError(f"{name} = {value!r}: must be a pair of numbers (x, y)")
    return (real(f"{name}[x]", items[0], allowed), real(f"{name}[y]", items[1], allowed))


def shape(name: str, value: object, max_shape: tuple[int, int], min_px: int = 8) -> tuple[int, int]:
    """Return a validated (rows, columns) image shape."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"{name} = {value!r}: must be (rows, columns)")
    items = tuple(value)
    if len(items) != 2:
        raise InvalidArgumentError(f"{name} = {value!r}: must be (rows, columns)")
    rows = integer(f"{name}[rows]", items[0], (min_px, max_shape[0]))
    cols = integer(f"{name}[columns]", items[1], (min_px, max_shape[1]))
    return (rows, cols)
