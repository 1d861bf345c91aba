"""Ground-truth helpers for the CLI, benchmarks and the gymnasium reward (never for policies).

They read `twin.truth` after (or, for the oracle reference, instead of) the agent's own
measurements. Nothing here is reachable from `Session` or the non-oracle policies.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def is_twin(scope: Any) -> bool:
    from twin import TwinMicroscope

    return isinstance(scope, TwinMicroscope)


class OracleTruth:
    """What the oracle policy may read: true particles and in-focus working distance."""

    def __init__(self, twin: Any):
        from twin import truth

        self._twin = twin
        self._truth = truth

    def particles(self, x0: float, y0: float, x1: float, y1: float) -> Any:
        return self._truth.particles_in(self._twin, x0, y0, x1, y1)

    def focus_wd_m(self, x: float, y: float) -> float:
        return self._truth.focus_wd_m(self._twin, x, y)


def truth_region(state: Any, min_side_m: float = 100e-6) -> tuple[float, float, float, float]:
    """Stage rectangle the truth is computed over: all visited fields, at least `min_side_m` square."""
    xs, ys = [], []
    for x, y, w, h in state.survey_fields:
        xs += [x - w / 2, x + w / 2]
        ys += [y - h / 2, y + h / 2]
    for f in state.fields:
        xs += [f.x_m - f.fov_m / 2, f.x_m + f.fov_m / 2]
        ys += [f.y_m - f.height_m / 2, f.y_m + f.height_m / 2]
    if not xs:
        xs, ys = [0.0], [0.0]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    half_w = max((max(xs) - min(xs)) / 2, min_side_m / 2)
    half_h = max((max(ys) - min(ys)) / 2, min_side_m / 2)
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def true_diameters(twin: Any, state: Any) -> np.ndarray:
    """Projected-area-equivalent diameters (m) of every true particle in the truth region."""
    from twin import truth

    p = truth.particles_in(twin, *truth_region(state))
    return np.asarray(p.diameter_m, dtype=float)


def add_truth(summary: dict[str, Any], twin: Any, state: Any) -> np.ndarray:
    """Add `true_mean_diameter_m` and the estimate's error to `summary`; return true diameters."""
    d = true_diameters(twin, state)
    if d.size:
        true_mean = float(d.mean())
        summary["true_mean_diameter_m"] = true_mean
        summary["true_particle_count_in_region"] = int(d.size)
        est = summary.get("mean_diameter_m")
        if est:
            summary["rel_error"] = (est - true_mean) / true_mean
            lo, hi = summary["credible_interval_m"]
            summary["truth_in_interval"] = bool(lo <= true_mean <= hi)
            summary["success"] = bool(summary["target_reached"]
                                      and abs(est - true_mean) / true_mean <= summary["target_rel_precision"])
    return d
