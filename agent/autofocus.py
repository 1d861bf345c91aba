"""Autofocus and autostigmation on any `drivers.Microscope`, with few small frames.

Methods (each returns a `FocusResult` and leaves the instrument at the found setting):

- `sweep`: through-focus series of n frames, best sharpness refined by a parabola (baseline).
- `three_point`: three frames at w−Δ, w, w+Δ; the smoothed gradient sharpness S of a
  defocus-blurred image falls like S ≈ A / (α²Δ² + r₀²) + B, so 1/S is close to a
  parabola in working distance whose vertex is the focus (a Lorentzian focus curve; cf.
  Yeo et al. 1993, "Autofocusing for tissue microscopy", on sharpness curves). If the three
  points do not bracket a minimum of 1/S, the search steps towards the sharper side.
- `learned`: two frames at w ± Δ fed to a two-frame estimator (the DeepFocus idea,
  Schubert et al. 2024) predicting the working-distance error and stigmator correction.
- `stigmate`: the same three-point fit on each stigmator axis in turn.

Frames are reduced-area: a small raster at the current pixel size, restored afterwards.
Every single correction is clamped to `max_step_m`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
from scipy import ndimage

from drivers import Frame, Microscope


def gradient_sharpness(image: np.ndarray, sigma_px: float = 1.0) -> float:
    """Mean squared gradient of the Gaussian-smoothed, mean-normalised image (dimensionless).

    Smoothing keeps shot noise from dominating (Tenengrad on a denoised image).
    """
    img = np.asarray(image, dtype=np.float32)
    mean = float(img.mean())
    if mean <= 0:
        return 0.0
    sm = ndimage.gaussian_filter(img / mean, sigma_px)
    gy, gx = np.gradient(sm)
    return float(np.mean(gx * gx + gy * gy))


class TwoFrameEstimator(Protocol):
    def predict(self, minus: np.ndarray, plus: np.ndarray, delta_m: float, pixel_size_m: float) -> tuple[float, tuple[float, float]]: ...


@dataclass
class FocusResult:
    """Outcome of one autofocus call: working distance (m) set, frames and time spent."""

    wd_m: float
    frames: int
    method: str
    converged: bool
    instrument_s: float
    electrons: float
    stigmator: tuple[float, float] | None = None
    trace: list[tuple[float, float]] = field(default_factory=list)  # (setting, sharpness)


class Autofocus:
    """Focus routines for `scope`. `shape_px` is the reduced-area raster used for focusing."""

    def __init__(self, scope: Microscope, shape_px: tuple[int, int] = (128, 128), dwell_s: float | None = None,
                 max_step_m: float = 20e-6, sharpness: Callable[[np.ndarray], float] = gradient_sharpness):
        self.scope = scope
        self.shape_px = shape_px
        self.dwell_s = dwell_s
        self.max_step_m = float(max_step_m)
        self.sharpness = sharpness

    # ---- helpers -------------------------------------------------------------------------
    def _reduced(self) -> tuple[object, float]:
        """Switch to the reduced-area raster at the same pixel size; return what to restore."""
        scan, fov = self.scope.get_scan(), self.scope.get_fov_m()
        pixel = fov / scan.shape_px[1]
        lim = self.scope.limits()
        rows, cols = self.shape_px
        self.scope.set_fov_m(min(max(pixel * cols, lim.fov_m[0]), lim.fov_m[1]))
        self.scope.set_scan(shape_px=(rows, cols), dwell_s=self.dwell_s or scan.dwell_s)
        return scan, fov

    def _restore(self, saved: tuple[object, float]) -> None:
        scan, fov = saved
        self.scope.set_scan(shape_px=scan.shape_px, dwell_s=scan.dwell_s)
        self.scope.set_fov_m(fov)

    def _clamp_wd(self, wd: float, around: float) -> float:
        lo, hi = self.scope.limits().working_distance_m
        wd = min(max(wd, around - self.max_step_m), around + self.max_step_m)
        return min(max(wd, lo), hi)

    def _frame_at_wd(self, wd: float) -> Frame:
        self.scope.set_working_distance_m(wd)
        return self.scope.acquire()

    def _start(self) -> tuple[float, float]:
        st = self.scope.status()
        return st.instrument_time_s, st.total_electrons

    def _result(self, wd: float, frames: int, method: str, converged: bool, t0: tuple[float, float],
                trace: list[tuple[float, float]], stig: tuple[float, float] | None = None) -> FocusResult:
        st = self.scope.status()
        return FocusResult(wd, frames, method, converged, st.instrument_time_s - t0[0], st.total_electrons - t0[1], stig, trace)

    # ---- methods ---------------------------------------------------------------------------
    def sweep(self, center_m: float, span_m: float, n: int = 11) -> FocusResult:
        """Through-focus series of `n` frames over ±span/2 around `center_m`."""
        if n < 3:
            raise ValueError(f"n = {n}: a sweep needs at least 3 frames")
        t0, saved = self._start(), self._reduced()
        try:
            lo, hi = self.scope.limits().working_distance_m
            wds = np.clip(np.linspace(center_m - span_m / 2, center_m + span_m / 2, n), lo, hi)
            trace = [(float(w), self.sharpness(self._frame_at_wd(float(w)).image)) for w in wds]
            s = np.array([t[1] for t in trace])
            k = int(np.argmax(s))
            best = float(wds[k])
            if 0 < k < n - 1:
                best = _parabola_vertex(wds[k - 1:k + 2], s[k - 1:k + 2], maximum=True) or best
            self.scope.set_working_distance_m(best)
        finally:
            self._restore(saved)
        return self._result(best, n, "sweep", 0 < k < n - 1, t0, trace)

    def three_point(self, wd0_m: float, delta_m: float, max_rounds: int = 4) -> FocusResult:
        """Three frames at wd0 − Δ, wd0, wd0 + Δ; vertex of a parabola fitted to 1/sharpness."""
        if not (delta_m > 0 and math.isfinite(delta_m)):
            raise ValueError(f"delta_m = {delta_m!r}: must be a finite positive distance (m)")
        t0, saved = self._start(), self._reduced()
        trace: list[tuple[float, float]] = []
        measured: dict[float, float] = {}
        center = wd0_m
        converged = False
        try:
            for _ in range(max_rounds):
                pts = [center - delta_m, center, center + delta_m]
                for w in pts:
                    if w not in measured:
                        measured[w] = self.sharpness(self._frame_at_wd(w).image)
                        trace.append((w, measured[w]))
                s = np.array([measured[w] for w in pts])
                inv = 1.0 / np.maximum(s, 1e-30)
                if inv[1] <= inv[0] and inv[1] <= inv[2]:
                    vertex = _parabola_vertex(np.array(pts), inv, maximum=False)
                    center = self._clamp_wd(vertex if vertex is not None else center, center)
                    converged = True
                    break
                step = -delta_m if s[0] > s[2] else delta_m
                center = self._clamp_wd(center + 2 * step, center)
            self.scope.set_working_distance_m(center)
        finally:
            self._restore(saved)
        return self._result(center, len(trace), "three_point", converged, t0, trace)

    def learned(self, wd0_m: float, delta_m: float, estimator: TwoFrameEstimator, iterations: int = 1,
                stigmate: bool = True) -> FocusResult:
        """Two frames at wd ± Δ per iteration; the estimator predicts the corrections."""
        t0, saved = self._start(), self._reduced()
        wd, frames, trace = wd0_m, 0, []
        stig = self.scope.get_stigmator()
        try:
            for _ in range(iterations):
                minus = self._frame_at_wd(wd - delta_m)
                plus = self._frame_at_wd(wd + delta_m)
                frames += 2
                err, dstig = estimator.predict(minus.image, plus.image, delta_m, minus.meta.pixel_size_m)
                wd = self._clamp_wd(wd - err, wd)
                trace.append((wd, float(err)))
                if stigmate:
                    lo, hi = self.scope.limits().stigmator
                    stig = tuple(float(np.clip(s + d, lo, hi)) for s, d in zip(stig, dstig))
                    self.scope.set_stigmator(*stig)
            self.scope.set_working_distance_m(wd)
        finally:
            self._restore(saved)
        return self._result(wd, frames, "learned", True, t0, trace, stig)

    def stigmate(self, step: float = 0.1, rounds: int = 1) -> FocusResult:
        """Three-point parabola on each stigmator axis (x then y) at the current focus."""
        t0, saved = self._start(), self._reduced()
        lo, hi = self.scope.limits().stigmator
        stig = list(self.scope.get_stigmator())
        trace: list[tuple[float, float]] = []
        frames = 0
        try:
            for _ in range(rounds):
                for axis in (0, 1):
                    pts = [min(max(stig[axis] + d, lo), hi) for d in (-step, 0.0, step)]
                    s = []
                    for p in pts:
                        trial = list(stig)
                        trial[axis] = p
                        self.scope.set_stigmator(*trial)
                        s.append(self.sharpness(self.scope.acquire().image))
                        trace.append((p, s[-1]))
                        frames += 1
                    vertex = _parabola_vertex(np.array(pts), np.array(s), maximum=True)
                    best = pts[int(np.argmax(s))] if vertex is None else vertex
                    stig[axis] = float(min(max(best, stig[axis] - 2 * step, lo), stig[axis] + 2 * step, hi))
                    self.scope.set_stigmator(*stig)
        finally:
            self._restore(saved)
        return self._result(self.scope.get_working_distance_m(), frames, "stigmate", True, t0, trace, tuple(stig))


def _parabola_vertex(x: np.ndarray, y: np.ndarray, maximum: bool) -> float | None:
    """Vertex of the parabola through three points; None if it opens the wrong way."""
    x = np.asarray(x, dtype=float)
    scale = float(np.ptp(x)) or 1.0
    a, b, _ = np.polyfit((x - x[1]) / scale, np.asarray(y, dtype=float), 2)
    if (maximum and a >= 0) or (not maximum and a <= 0):
        return None
    return float(x[1]) - b / (2 * a) * scale
