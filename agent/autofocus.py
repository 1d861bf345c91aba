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


def noise_floor(image: np.ndarray, sigma_px: float = 1.0) -> float:
    """Expected `gradient_sharpness` of the frame's noise alone (white-noise estimate).

    The noise variance comes from the median absolute difference of horizontally
    adjacent pixels (robust to edges; Donoho & Johnstone 1994 style MAD estimate); its
    contribution to the smoothed gradient energy is that variance times the squared norm
    of the derivative-of-Gaussian filter, computed numerically on an impulse.
    """
    img = np.asarray(image, dtype=np.float32)
    mean = float(img.mean())
    if mean <= 0:
        return 0.0
    d = np.diff(img / mean, axis=1)
    var = (1.4826 * float(np.median(np.abs(d - np.median(d))))) ** 2 / 2
    return var * _filter_gain(sigma_px)


_GAINS: dict[float, float] = {}


def _filter_gain(sigma_px: float) -> float:
    if sigma_px not in _GAINS:
        imp = np.zeros((33, 33), np.float64)
        imp[16, 16] = 1.0
        gy, gx = np.gradient(ndimage.gaussian_filter(imp, sigma_px))
        _GAINS[sigma_px] = float((gx * gx + gy * gy).sum())
    return _GAINS[sigma_px]


def two_point_focus(w_minus: float, w_plus: float, s_minus: float, s_plus: float, c: float) -> float | None:
    """Focus from two noise-corrected sharpness values at w ∓ δ on a Lorentzian curve.

    With S_i = A/((w_i − e)² + c²), the ratio R = S₋/S₊ gives a quadratic in e; of its two
    roots (product δ² + c²), the one nearer the middle is returned. None if undefined.
    """
    if s_minus <= 0 or s_plus <= 0:
        return None
    mid, delta = 0.5 * (w_minus + w_plus), 0.5 * (w_plus - w_minus)
    r = s_minus / s_plus
    a, b, cc = r - 1.0, 2 * delta * (r + 1.0), (r - 1.0) * (delta * delta + c * c)
    if abs(a) < 1e-9:
        return mid
    disc = b * b - 4 * a * cc
    if disc < 0:
        return None
    roots = [(-b + sgn * math.sqrt(disc)) / (2 * a) for sgn in (1.0, -1.0)]
    return mid + min(roots, key=abs)


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
                 max_step_m: float = 20e-6, sharpness: Callable[[np.ndarray], float] = gradient_sharpness,
                 min_contrast: float = 0.1):
        self.scope = scope
        self.shape_px = shape_px
        self.dwell_s = dwell_s
        self.max_step_m = float(max_step_m)
        self.sharpness = sharpness
        self.min_contrast = float(min_contrast)  # relative sharpness change below which a curve is flat

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
        """Through-focus series of `n` frames over ±span/2 around `center_m` (clipped to the
        instrument's working-distance range). A flat sharpness curve (relative change below
        `min_contrast`: an empty field) leaves the working distance at `center_m`."""
        if n < 3:
            raise ValueError(f"n = {n}: a sweep needs at least 3 frames")
        t0, saved = self._start(), self._reduced()
        try:
            lo, hi = self.scope.limits().working_distance_m
            wds = np.unique(np.clip(np.linspace(center_m - span_m / 2, center_m + span_m / 2, n), lo, hi))
            trace = [(float(w), self.sharpness(self._frame_at_wd(float(w)).image)) for w in wds]
            s = np.array([t[1] for t in trace])
            k = int(np.argmax(s))
            structured = _relative_change(s) >= self.min_contrast
            peaked = structured and 0 < k < len(wds) - 1
            best = float(min(max(center_m, lo), hi))
            if peaked:
                vertex = _parabola_vertex(wds[k - 1:k + 2], s[k - 1:k + 2], maximum=True)
                best = float(np.clip(vertex if vertex is not None else wds[k], wds[k - 1], wds[k + 1]))
            elif structured:
                best = float(wds[k])  # sharpest at an end of the range: move there, not beyond
            self.scope.set_working_distance_m(best)
        finally:
            self._restore(saved)
        return self._result(best, len(wds), "sweep", peaked, t0, trace)

    def three_point(self, wd0_m: float, delta_m: float, max_rounds: int = 3, c_m: float | None = None) -> FocusResult:
        """Frames at wd0 − Δ, wd0, wd0 + Δ; focus from a Lorentzian fit of the sharpness curve.

        `c_m` is the curve's half-width at focus (m); by default 1.8 depths of field when
        Δ = 1.5 DoF (measured on twin frames with the default smoothing). A flat curve (less
        than `min_contrast` relative change: nothing in view) leaves the focus unchanged. If the fitted focus lies outside the sampled span, the search moves
        there (clamped to `max_step_m`) and adds frames.
        """
        if not (delta_m > 0 and math.isfinite(delta_m)):
            raise ValueError(f"delta_m = {delta_m!r}: must be a finite positive distance (m)")
        c = c_m if c_m is not None else 1.8 * delta_m / 1.5
        t0, saved = self._start(), self._reduced()
        trace: list[tuple[float, float]] = []
        measured: dict[float, float] = {}
        center = wd0_m
        converged = False
        try:
            for _ in range(max_rounds):
                for w in (center - delta_m, center, center + delta_m):
                    w = self._clamp_wd(w, w)
                    if w not in measured:
                        measured[w] = self.sharpness(self._frame_at_wd(w).image)
                        trace.append((w, measured[w]))
                ws = np.array(sorted(measured))
                ss = np.array([measured[w] for w in ws])
                if _relative_change(ss) < self.min_contrast:
                    center = wd0_m  # flat curve: nothing in view to focus on; keep the start
                    break
                est = lorentz_focus(ws, ss, c, span=4 * delta_m)
                if est is None:
                    est = float(ws[int(np.argmax(ss))])
                est = self._clamp_wd(est, center)
                if ws[0] - 0.5 * delta_m <= est <= ws[-1] + 0.5 * delta_m:
                    center, converged = est, True
                    break
                center = est
            self.scope.set_working_distance_m(center)
        finally:
            self._restore(saved)
        return self._result(center, len(trace), "three_point", converged, t0, trace)

    def two_point(self, wd0_m: float, delta_m: float, c_m: float | None = None) -> FocusResult:
        """Two frames at wd0 ± Δ; focus from the ratio of their noise-corrected sharpness.

        The noise floor of each frame is estimated from the frame itself, leaving the
        Lorentzian signal part whose ratio fixes the focus (`two_point_focus`). A flat
        pair (nothing in view) leaves the focus unchanged.
        """
        if not (delta_m > 0 and math.isfinite(delta_m)):
            raise ValueError(f"delta_m = {delta_m!r}: must be a finite positive distance (m)")
        c = c_m if c_m is not None else 1.8 * delta_m / 1.5
        t0, saved = self._start(), self._reduced()
        trace: list[tuple[float, float]] = []
        center, converged = wd0_m, False
        try:
            sig = []
            for w in (wd0_m - delta_m, wd0_m + delta_m):
                img = self._frame_at_wd(w).image
                total = self.sharpness(img)
                sig.append(total - noise_floor(img))
                trace.append((w, total))
            if max(sig) > self.min_contrast * max(t for _, t in trace):
                est = two_point_focus(wd0_m - delta_m, wd0_m + delta_m, sig[0], sig[1], c)
                if est is not None:
                    center, converged = self._clamp_wd(est, wd0_m), True
            self.scope.set_working_distance_m(center)
        finally:
            self._restore(saved)
        return self._result(center, len(trace), "two_point", converged, t0, trace)

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


def lorentz_focus(w: np.ndarray, s: np.ndarray, c: float, span: float) -> float | None:
    """Focus e of S(w) = A / ((w − e)² + c²) + B through the points (w, s), c known (m).

    For each trial e, A and B follow linearly by least squares; the e with the smallest
    residual and A > 0 wins (grid search within ±span of the middle point, then refined).
    B absorbs the noise floor of the sharpness metric, which a plain 1/S parabola cannot.
    """
    w = np.asarray(w, dtype=float)
    s = np.asarray(s, dtype=float)
    mid = float(np.median(w))
    scale = float(np.max(np.abs(s))) or 1.0

    def fit(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = 1.0 / ((w[None, :] - e[:, None]) ** 2 + c * c)          # (n_e, n_pts)
        gm, sm = g.mean(axis=1, keepdims=True), (s / scale).mean()
        gc = g - gm
        a = (gc * (s / scale - sm)).sum(axis=1) / np.maximum((gc * gc).sum(axis=1), 1e-300)
        b = sm - a * gm[:, 0]
        res = ((a[:, None] * g + b[:, None] - s / scale) ** 2).sum(axis=1)
        return np.where(a > 0, res, np.inf), a

    grid = mid + np.linspace(-span, span, 801)
    res, _ = fit(grid)
    if not np.isfinite(res).any():
        return None
    k = int(np.argmin(res))
    fine = grid[k] + np.linspace(-span / 400, span / 400, 81)
    res2, _ = fit(fine)
    return float(fine[int(np.argmin(res2))])


def _relative_change(s: np.ndarray) -> float:
    """(max - min) / max of a sharpness curve (0 for a flat or all-zero curve)."""
    top = float(np.max(s))
    return (top - float(np.min(s))) / top if top > 0 else 0.0


def _parabola_vertex(x: np.ndarray, y: np.ndarray, maximum: bool) -> float | None:
    """Vertex of the parabola through three points; None if it opens the wrong way."""
    x = np.asarray(x, dtype=float)
    scale = float(np.ptp(x)) or 1.0
    a, b, _ = np.polyfit((x - x[1]) / scale, np.asarray(y, dtype=float), 2)
    if (maximum and a >= 0) or (not maximum and a <= 0):
        return None
    return float(x[1]) - b / (2 * a) * scale
