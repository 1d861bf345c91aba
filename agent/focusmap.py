"""Focus map: a smooth surface fitted to in-focus working distances measured at stage points.

Fields far from any focus measurement are acquired at the predicted working distance; the
agent refocuses only where the prediction is uncertain. Model: a plane, or a quadratic once
six or more sites are measured, fitted by least squares; the prediction uncertainty grows
with the distance to the nearest measured site.
"""
from __future__ import annotations

import math

import numpy as np


class FocusMap:
    """In-focus working distance (m) as a function of stage x, y (m)."""

    def __init__(self, slope_uncertainty: float = 2e-4):
        # 2e-4 rad: a typical residual specimen tilt/warp (m of height per m of travel)
        self.slope_uncertainty = float(slope_uncertainty)
        self._pts: list[tuple[float, float, float]] = []
        self._coef: np.ndarray | None = None
        self._scale = 1e-3

    def __len__(self) -> int:
        return len(self._pts)

    def add(self, x_m: float, y_m: float, wd_m: float) -> None:
        """Record a measured in-focus working distance at a stage point."""
        for name, v in (("x_m", x_m), ("y_m", y_m), ("wd_m", wd_m)):
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} = {v!r}: must be a finite number (m)")
        self._pts.append((float(x_m), float(y_m), float(wd_m)))
        self._fit()

    def _design(self, x: np.ndarray, y: np.ndarray, n_terms: int) -> np.ndarray:
        u, v = x / self._scale, y / self._scale
        cols = [np.ones_like(u), u, v, u * u, u * v, v * v][:n_terms]
        return np.stack(cols, axis=-1)

    def _fit(self) -> None:
        p = np.array(self._pts)
        n = len(p)
        n_terms = 1 if n < 3 else (3 if n < 6 else 6)
        a = self._design(p[:, 0], p[:, 1], n_terms)
        self._coef, *_ = np.linalg.lstsq(a, p[:, 2], rcond=None)

    def predict(self, x_m: float, y_m: float) -> tuple[float, float]:
        """(working distance, 1-σ uncertainty) in metres; (nan, inf) with no data."""
        if self._coef is None:
            return math.nan, math.inf
        a = self._design(np.array([x_m]), np.array([y_m]), len(self._coef))
        wd = float((a @ self._coef)[0])
        p = np.array(self._pts)
        dist = float(np.min(np.hypot(p[:, 0] - x_m, p[:, 1] - y_m)))
        residual = float(np.std(p[:, 2] - self._design(p[:, 0], p[:, 1], len(self._coef)) @ self._coef)) if len(p) > 3 else 0.0
        return wd, math.hypot(self.slope_uncertainty * dist, residual)

    def points(self) -> np.ndarray:
        """Measured sites as an (n, 3) array of x, y, wd (m)."""
        return np.array(self._pts).reshape(-1, 3)
