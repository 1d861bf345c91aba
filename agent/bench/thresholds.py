"""Benchmark thresholds: a TOML file of figures with bounds, and the check against results.

A thresholds file holds ``[[threshold]]`` tables:

```toml
[[threshold]]
bench = "agent"            # agent (default) | perception | render | remote
scenario = "*"             # agent: a scenario name, "*" = each scenario run, "all" = pooled over them
policy = "raster/bayes"    # agent: a policy, "*" = each policy run, or a ratio "A/B" of two policies
figure = "instrument_s"    # agent: see agent_bench.FIGURES; other benches: a dotted path in results.json
min = 3.0                  # and/or max
enforce = true             # false: a goal, reported (met / missed) but never failing the check
note = "why this bound"
```

Bounds are ratios and accuracies, never wall-clock times (figure names containing ``wall``,
``per_s``, ``fps``, ``_ms`` or ``latency`` are rejected), so a file holds on any machine. A
bound on a figure that the run did not measure (a scenario or policy not in the run) is
skipped and listed; a figure of a scenario and policy that ran but has no value (every
episode failed) is a regression.
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

BENCHES = ("agent", "perception", "render", "remote")
_WALL = re.compile(r"wall|per_s\b|per_s_|fps|_ms\b|latency|throughput")
_KEYS = {"bench", "scenario", "policy", "figure", "min", "max", "enforce", "note"}


class ThresholdError(ValueError):
    """A malformed thresholds file (names the file, the entry and the key)."""


@dataclass(frozen=True)
class Threshold:
    """One bound on one figure (see the module docstring for the fields)."""

    figure: str
    min: float | None = None
    max: float | None = None
    bench: str = "agent"
    scenario: str = "*"
    policy: str = "bayes"
    enforce: bool = True
    note: str = ""

    def bounds_text(self) -> str:
        parts = ([f"min {self.min:g}"] if self.min is not None else []) + (
            [f"max {self.max:g}"] if self.max is not None else [])
        return ", ".join(parts)

    def violated_by(self, value: float) -> str | None:
        """Why `value` breaks this bound, or None if it holds."""
        if self.min is not None and value < self.min:
            return f"< min {self.min:g}"
        if self.max is not None and value > self.max:
            return f"> max {self.max:g}"
        return None


def _entry(raw: Any, where: str) -> Threshold:
    if not isinstance(raw, dict):
        raise ThresholdError(f"{where}: must be a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ThresholdError(f"{where}.{sorted(unknown)[0]}: unknown key (allowed: {', '.join(sorted(_KEYS))})")
    fig = raw.get("figure")
    if not isinstance(fig, str) or not fig:
        raise ThresholdError(f"{where}.figure = {fig!r}: must be a non-empty string")
    if _WALL.search(fig):
        raise ThresholdError(f"{where}.figure = {fig!r}: wall-clock figures are not allowed "
                             "(use ratios or accuracies, which hold on any machine)")
    for key in ("min", "max"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise ThresholdError(f"{where}.{key} = {v!r}: must be a finite number")
    if raw.get("min") is None and raw.get("max") is None:
        raise ThresholdError(f"{where}: needs min or max")
    bench = raw.get("bench", "agent")
    if bench not in BENCHES:
        raise ThresholdError(f"{where}.bench = {bench!r}: must be one of {', '.join(BENCHES)}")
    for key in ("scenario", "policy", "note"):
        if key in raw and not isinstance(raw[key], str):
            raise ThresholdError(f"{where}.{key} = {raw[key]!r}: must be a string")
    if "enforce" in raw and not isinstance(raw["enforce"], bool):
        raise ThresholdError(f"{where}.enforce = {raw['enforce']!r}: must be true or false")
    policy = raw.get("policy", "bayes")
    if policy.count("/") > 1 or policy.startswith("/") or policy.endswith("/"):
        raise ThresholdError(f"{where}.policy = {policy!r}: must be a policy, '*' or 'A/B'")
    return Threshold(figure=fig, min=_f(raw.get("min")), max=_f(raw.get("max")), bench=bench,
                     scenario=raw.get("scenario", "*"), policy=policy, enforce=raw.get("enforce", True),
                     note=raw.get("note", ""))


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def load_thresholds(path: str | Path) -> list[Threshold]:
    """Read and validate a thresholds file; ThresholdError names the entry and key at fault."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"thresholds file {str(p)!r} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdError(f"{p}: not valid TOML: {exc}") from None
    extra = set(data) - {"threshold"}
    if extra:
        raise ThresholdError(f"{p}: unknown top-level key {sorted(extra)[0]!r} (only [[threshold]] tables)")
    entries = data.get("threshold", [])
    if not isinstance(entries, list):
        raise ThresholdError(f"{p}: 'threshold' must be an array of tables ([[threshold]])")
    return [_entry(raw, f"{p.name}: threshold[{i}]") for i, raw in enumerate(entries)]


@dataclass
class Outcome:
    """One bound applied to one measured figure."""

    threshold: Threshold
    label: str  # e.g. "default: raster/bayes instrument_s"
    value: float | None
    status: str  # pass | fail | goal-met | goal-missed | skipped
    reason: str = ""

    def line(self) -> str:
        val = "not measured" if self.value is None else f"{self.value:.4g}"
        tag = {"pass": "ok", "fail": "REGRESSED", "goal-met": "goal met", "goal-missed": "goal missed",
               "skipped": "skipped"}[self.status]
        tail = f" ({self.reason})" if self.reason else ""
        return f"{tag:12s} {self.label} = {val} [{self.threshold.bounds_text()}]{tail}"


@dataclass
class CheckReport:
    """Every outcome of a check; `regressions` are the enforced bounds that failed."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def regressions(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.regressions

    def format(self) -> str:
        order = {"fail": 0, "goal-missed": 1, "pass": 2, "goal-met": 3, "skipped": 4}
        lines = [o.line() for o in sorted(self.outcomes, key=lambda o: order[o.status])]
        n = len(self.regressions)
        lines.append(f"check: {n} regression{'s' if n != 1 else ''} in "
                     f"{sum(o.status in ('pass', 'fail') for o in self.outcomes)} enforced figures")
        return "\n".join(lines)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"label": o.label, "value": o.value, "status": o.status, "reason": o.reason,
                 "min": o.threshold.min, "max": o.threshold.max, "enforce": o.threshold.enforce,
                 "note": o.threshold.note} for o in self.outcomes]


#: a lookup maps a threshold to the figures it applies to: (label, value) pairs; value None =
#: should have been measured but was not; an empty list = not in this run (skipped)
Lookup = Callable[[Threshold], list[tuple[str, float | None]]]


def check(thresholds: Iterable[Threshold], lookup: Lookup, bench: str = "agent") -> CheckReport:
    """Apply every threshold of `bench` to the figures `lookup` finds."""
    report = CheckReport()
    for t in thresholds:
        if t.bench != bench:
            continue
        found = lookup(t)
        if not found:
            report.outcomes.append(Outcome(t, f"{t.scenario}: {t.policy} {t.figure}" if bench == "agent" else t.figure,
                                           None, "skipped", "not in this run"))
        for label, value in found:
            report.outcomes.append(_judge(t, label, value))
    return report


def _judge(t: Threshold, label: str, value: float | None) -> Outcome:
    if value is None or not math.isfinite(value):
        why, bad = "no value: every episode failed or the figure is undefined", True
        value = None
    else:
        why = t.violated_by(value) or ""
        bad = bool(why)
    if t.enforce:
        return Outcome(t, label, value, "fail" if bad else "pass", why)
    return Outcome(t, label, value, "goal-missed" if bad else "goal-met", why)


def dotted(result: dict[str, Any], path: str) -> Any:
    """`result["a"]["b"]` for path "a.b" (list items by index); KeyError if absent."""
    node: Any = result
    for part in path.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(path)
    return node


def results_lookup(result: dict[str, Any]) -> Lookup:
    """Lookup for the dict-shaped results of the render/remote/perception benchmarks."""

    def find(t: Threshold) -> list[tuple[str, float | None]]:
        try:
            v = dotted(result, t.figure)
        except (KeyError, IndexError, ValueError):
            return []
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        return [(t.figure, float(v) if ok else None)]

    return find


def check_results(result: dict[str, Any], path: str | Path, bench: str) -> CheckReport:
    """Check a render/remote/perception result dict against the `bench` entries of a thresholds file."""
    return check(load_thresholds(path), results_lookup(result), bench=bench)
