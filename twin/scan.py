"""Scan generator timing and the specimen points each pixel actually samples.

Conventions (SI units):

* Pixel ``(i, j)`` = (row, column). Row 0 is the top line, scanned first; columns are the
  fast axis. With scan rotation 0, +column = stage +x and +row = stage −y (image "up" = +y,
  as on most SEMs). A scan rotation ``theta`` rotates both scan axes counter-clockwise by
  ``theta`` in the stage plane::

      nominal(i, j) = centre + R(theta) @ ((j − (nx−1)/2)·p,  −(i − (ny−1)/2)·p)

  so ``col_step_m = p·(cos θ, sin θ)`` and ``row_step_m = p·(sin θ, −cos θ)``.
* Timing: line ``i`` starts at ``t0 + i·(nx·dwell·L + flyback)``; pixel ``j`` of it is sampled
  at ``line start + j·dwell·L`` (line integration ``L`` is timed like L consecutive samples
  per pixel; one flyback per line). Frame time = ``ny·(nx·dwell·L + flyback)``.
* Drift moves the SPECIMEN: ``DriftModel.offset_m(t)`` is the specimen displacement relative
  to the beam, so the specimen point under the beam is ``nominal − offset``; image features
  therefore move by ``+offset``. Beam shift moves the BEAM: the sampled point is
  ``nominal + beam_shift``. Line jitter (per line, along the fast axis) and mains vibration
  (sinusoid of absolute instrument time along ``vibration_angle_rad``) displace the beam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivers.validate import integer, real


def _pos_finite(cls: str, name: str, v: float, allow_zero: bool = True) -> None:
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(f"{cls}.{name} = {v}: must be a finite number {'>=' if allow_zero else '>'} 0")


def _range_ok(cls: str, name: str, v: tuple[float, float]) -> None:
    if len(v) != 2 or not all(math.isfinite(x) for x in v) or not 0 < v[0] < v[1]:
        raise ValueError(f"{cls}.{name} = {v}: must be (low, high) with 0 < low < high")


@dataclass(frozen=True)
class ScanConfig:
    """Scan generator: flyback, line jitter, mains vibration, limits."""

    flyback_s: float = 100e-6
    line_jitter_m: float = 0.5e-9
    vibration_amplitude_m: float = 1e-9
    vibration_frequency_hz: float = 50.0
    vibration_angle_rad: float = 0.3
    max_width_px: int = 4096
    max_height_px: int = 4096
    dwell_range_s: tuple[float, float] = (50e-9, 1e-3)
    fov_range_m: tuple[float, float] = (100e-9, 1e-3)

    def __post_init__(self) -> None:
        for name in ("flyback_s", "line_jitter_m", "vibration_amplitude_m",
                     "vibration_frequency_hz"):
            _pos_finite("ScanConfig", name, getattr(self, name))
        if not math.isfinite(self.vibration_angle_rad):
            raise ValueError(f"ScanConfig.vibration_angle_rad = {self.vibration_angle_rad}: must be finite")
        for name in ("max_width_px", "max_height_px"):
            if getattr(self, name) < 8:
                raise ValueError(f"ScanConfig.{name} = {getattr(self, name)}: must be >= 8")
        _range_ok("ScanConfig", "dwell_range_s", self.dwell_range_s)
        _range_ok("ScanConfig", "fov_range_m", self.fov_range_m)


@dataclass(frozen=True)
class DriftConfig:
    """Thermal drift (steady velocity) and settling creep after stage moves.

    After a move of length ``L`` the field of view keeps creeping along the move direction by
    ``settle_amplitude_m·(1 − exp(−L/settle_length_m))`` in total, with time constant
    ``settle_tau_s``.
    """

    velocity_m_per_s: tuple[float, float] = (0.2e-9, -0.1e-9)
    settle_amplitude_m: float = 20e-9
    settle_tau_s: float = 30.0
    settle_length_m: float = 100e-6

    def __post_init__(self) -> None:
        v = self.velocity_m_per_s
        if len(v) != 2 or not all(math.isfinite(c) for c in v):
            raise ValueError(f"DriftConfig.velocity_m_per_s = {v}: must be two finite numbers")
        _pos_finite("DriftConfig", "settle_amplitude_m", self.settle_amplitude_m)
        _pos_finite("DriftConfig", "settle_tau_s", self.settle_tau_s, allow_zero=False)
        _pos_finite("DriftConfig", "settle_length_m", self.settle_length_m, allow_zero=False)


@dataclass(frozen=True, eq=False)
class SampleGrid:
    """Specimen (stage-frame) coordinates sampled by each pixel of one frame.

    ``origin_m``, ``col_step_m`` and ``row_step_m`` describe the undistorted scan (no drift,
    jitter, vibration or beam shift). ``shift_m`` is the frame-constant part of the distortion
    (beam shift − drift offset at frame start). ``slack_m`` bounds ``|actual − nominal|`` over
    the grid; ``residual_m`` bounds ``|actual − (nominal + shift)|``. ``t_start_s`` and
    ``t_end_s`` are the instrument times at which the frame starts and ends.
    """

    x_m: np.ndarray
    y_m: np.ndarray
    origin_m: tuple[float, float]
    col_step_m: tuple[float, float]
    row_step_m: tuple[float, float]
    slack_m: float
    pixel_size_m: float
    shift_m: tuple[float, float] = (0.0, 0.0)
    residual_m: float = 0.0
    rotation_rad: float = 0.0
    t_start_s: float = 0.0
    t_end_s: float = 0.0

    @property
    def shape_px(self) -> tuple[int, int]:
        return (int(self.x_m.shape[0]), int(self.x_m.shape[1]))

    @property
    def area_m2(self) -> float:
        """Scanned area (m²): rows × columns × pixel²."""
        ny, nx = self.shape_px
        return ny * nx * self.pixel_size_m**2

    @property
    def center_m(self) -> tuple[float, float]:
        """Nominal centre of the field plus the frame-constant shift (m)."""
        ny, nx = self.shape_px
        cx = self.origin_m[0] + 0.5 * (nx - 1) * self.col_step_m[0] + 0.5 * (ny - 1) * self.row_step_m[0]
        cy = self.origin_m[1] + 0.5 * (nx - 1) * self.col_step_m[1] + 0.5 * (ny - 1) * self.row_step_m[1]
        return (cx + self.shift_m[0], cy + self.shift_m[1])

    def bbox_m(self, margin_m: float = 0.0) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) enclosing every sampled point plus ``margin_m``, from the
        nominal corners and ``slack_m`` (no pass over the arrays)."""
        ny, nx = self.shape_px
        xs, ys = [], []
        for i in (0, ny - 1):
            for j in (0, nx - 1):
                xs.append(self.origin_m[0] + j * self.col_step_m[0] + i * self.row_step_m[0])
                ys.append(self.origin_m[1] + j * self.col_step_m[1] + i * self.row_step_m[1])
        m = self.slack_m + 0.5 * self.pixel_size_m * math.sqrt(2.0) + margin_m
        return (min(xs) - m, max(xs) + m, min(ys) - m, max(ys) + m)


def _line_period_s(nx: int, dwell_s: float, line_integration: int, flyback_s: float) -> float:
    return nx * dwell_s * line_integration + flyback_s


def _check_timing(shape_px: tuple[int, int], dwell_s: float, line_integration: int,
                  flyback_s: float) -> tuple[int, int, float, int, float]:
    if isinstance(shape_px, (str, bytes)) or len(shape_px) != 2:
        raise ValueError(f"shape_px = {shape_px!r}: must be (rows, columns)")
    ny = integer("shape_px[rows]", shape_px[0], (1, 1 << 20))
    nx = integer("shape_px[columns]", shape_px[1], (1, 1 << 20))
    dwell = real("dwell_s", dwell_s, (1e-15, 1e3))
    lint = integer("line_integration", line_integration, (1, 1 << 16))
    fly = real("flyback_s", flyback_s, (0.0, 1e3))
    return ny, nx, dwell, lint, fly


def frame_time_s(shape_px: tuple[int, int], dwell_s: float, line_integration: int,
                 flyback_s: float) -> float:
    """Frame time (s) = rows · (columns · dwell · line_integration + flyback)."""
    ny, nx, dwell, lint, fly = _check_timing(shape_px, dwell_s, line_integration, flyback_s)
    return ny * _line_period_s(nx, dwell, lint, fly)


def line_start_times_s(shape_px: tuple[int, int], dwell_s: float, line_integration: int,
                       flyback_s: float) -> np.ndarray:
    """Start time (s) of each line relative to the frame start, shape (rows,)."""
    ny, nx, dwell, lint, fly = _check_timing(shape_px, dwell_s, line_integration, flyback_s)
    return np.arange(ny, dtype=np.float64) * _line_period_s(nx, dwell, lint, fly)


class DriftModel:
    """Specimen displacement relative to the beam (m, stage frame) versus instrument time.

    ``offset(t) = velocity·t + sum_k A_k·(1 − exp(−(t − t_k)/tau))·(−u_k)`` for moves at
    ``t_k`` with unit direction ``u_k``. A stage move of +dx shows specimen points further
    along +x; the creep continues that motion, so the SAMPLED point (``nominal − offset``)
    keeps advancing along ``u_k``, i.e. the offset points along ``−u_k``.
    """

    _FOLD_TAUS = 40.0  # transients older than this many tau are folded into a constant

    def __init__(self, cfg: DriftConfig) -> None:
        self.cfg = cfg
        self._const = np.zeros(2)
        self._moves: list[tuple[float, float, float]] = []  # (t_k, A_k·(−u_x), A_k·(−u_y))
        self._last_move_s = -math.inf

    def on_stage_move(self, t_s: float, dx_m: float, dy_m: float) -> None:
        """Start a settle transient at instrument time ``t_s`` after a move by (dx, dy) m."""
        t = real("t_s", t_s)
        dx, dy = real("dx_m", dx_m), real("dy_m", dy_m)
        if t < self._last_move_s:
            raise ValueError(f"t_s = {t}: must be >= the previous move time {self._last_move_s}")
        self._last_move_s = t
        length = math.hypot(dx, dy)
        if length == 0.0 or self.cfg.settle_amplitude_m == 0.0:
            return
        amp = self.cfg.settle_amplitude_m * -math.expm1(-length / self.cfg.settle_length_m)
        tau = self.cfg.settle_tau_s
        keep = []
        for tk, ax, ay in self._moves:
            if t - tk > self._FOLD_TAUS * tau:
                self._const += (ax, ay)
            else:
                keep.append((tk, ax, ay))
        keep.append((t, -amp * dx / length, -amp * dy / length))
        self._moves = keep

    def offset_m(self, t_s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative drift offset (x, y) in m at instrument time(s) ``t_s``."""
        t = np.asarray(t_s, dtype=np.float64)
        vx, vy = self.cfg.velocity_m_per_s
        ox = vx * t + self._const[0]
        oy = vy * t + self._const[1]
        tau = self.cfg.settle_tau_s
        for tk, ax, ay in self._moves:
            frac = -np.expm1(-np.maximum(t - tk, 0.0) / tau)
            ox = ox + ax * frac
            oy = oy + ay * frac
        return ox, oy


def _rotation_steps(rotation_rad: float, p: float) -> tuple[tuple[float, float], tuple[float, float]]:
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    return (p * c, p * s), (p * s, -p * c)


def sample_grid(center_m: tuple[float, float], fov_m: float, shape_px: tuple[int, int],
                rotation_rad: float, t0_s: float, dwell_s: float, line_integration: int,
                scan_cfg: ScanConfig, drift: DriftModel, rng: np.random.Generator,
                beam_shift_m: tuple[float, float] = (0.0, 0.0)) -> SampleGrid:
    """Specimen coordinates sampled by each pixel of a frame starting at instrument time ``t0_s``.

    ``fov_m`` is the field width along the fast (column) axis; pixel size = fov_m / columns.
    Draws ``rows`` standard normals from ``rng`` (line jitter) and nothing else.
    """
    ny, nx, dwell, lint, fly = _check_timing(shape_px, dwell_s, line_integration, scan_cfg.flyback_s)
    cx, cy = real("center_m[x]", center_m[0]), real("center_m[y]", center_m[1])
    fov = real("fov_m", fov_m, (1e-15, 1.0))
    rot = real("rotation_rad", rotation_rad)
    t0 = real("t0_s", t0_s)
    bsx, bsy = real("beam_shift_m[x]", beam_shift_m[0]), real("beam_shift_m[y]", beam_shift_m[1])
    p = fov / nx
    col, row = _rotation_steps(rot, p)
    jc = np.arange(nx, dtype=np.float64) - 0.5 * (nx - 1)
    ic = np.arange(ny, dtype=np.float64) - 0.5 * (ny - 1)
    origin = (cx + jc[0] * col[0] + ic[0] * row[0], cy + jc[0] * col[1] + ic[0] * row[1])

    period = _line_period_s(nx, dwell, lint, fly)
    t_line = t0 + np.arange(ny, dtype=np.float64) * period          # (ny,)
    t_pix = np.arange(nx, dtype=np.float64) * (dwell * lint)         # (nx,) within a line
    scan_span = t_pix[-1]
    # Drift: exact at line start and end, linear within a line (drift is smooth on line times).
    d0x, d0y = drift.offset_m(t_line)
    d1x, d1y = drift.offset_m(t_line + scan_span)
    f0x, f0y = drift.offset_m(t0)
    frac = t_pix / scan_span if scan_span > 0 else np.zeros(nx)
    # Jitter along the fast axis, one draw per line.
    jit = rng.standard_normal(ny) * scan_cfg.line_jitter_m
    ux, uy = math.cos(rot), math.sin(rot)
    # Vibration sin(w(t_line + t_pix)) = sin(w t_line)cos(w t_pix) + cos(w t_line)sin(w t_pix).
    w = 2.0 * math.pi * scan_cfg.vibration_frequency_hz
    amp = scan_cfg.vibration_amplitude_m
    va, vb = math.cos(scan_cfg.vibration_angle_rad), math.sin(scan_cfg.vibration_angle_rad)
    sl, cl = np.sin(w * t_line) * amp, np.cos(w * t_line) * amp
    cp, sp = np.cos(w * t_pix), np.sin(w * t_pix)

    shift = (bsx - float(f0x), bsy - float(f0y))
    # Each coordinate is a sum of rank-1 terms (per line × per column). einsum without BLAS:
    # single-threaded, deterministic, and immune to BLAS thread contention.
    right = np.stack([np.ones(nx), jc, frac, cp, sp])                # (5, nx)
    xs, ys = [], []
    for k, (o, c, r, d0, d1, vk, uk, sh) in enumerate((
            (cx, col[0], row[0], d0x, d1x, va, ux, bsx),
            (cy, col[1], row[1], d0y, d1y, vb, uy, bsy))):
        left = np.stack([o + sh + ic * r - d0 + jit * uk,           # per-line position
                         np.full(ny, c),                             # column step
                         d0 - d1,                                    # drift within the line
                         sl * vk, cl * vk], axis=1)                  # vibration
        (xs if k == 0 else ys).append(np.einsum("ik,kj->ij", left, right, optimize=False))

    drift_res = max(float(np.max(np.hypot(d0x - f0x, d0y - f0y))),
                    float(np.max(np.hypot(d1x - f0x, d1y - f0y))))
    residual = drift_res + float(np.max(np.abs(jit), initial=0.0)) + amp
    return SampleGrid(
        x_m=xs[0], y_m=ys[0], origin_m=origin, col_step_m=col, row_step_m=row,
        slack_m=math.hypot(*shift) + residual, pixel_size_m=p, shift_m=shift,
        residual_m=residual, rotation_rad=rot, t_start_s=t0, t_end_s=t0 + ny * period)
