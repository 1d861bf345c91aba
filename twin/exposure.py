"""Beam-exposure artefacts driven by the electron dose per specimen area: charging and
hydrocarbon contamination.

Dose bookkeeping: every frame deposits ``electrons / scanned area`` (e/m²) uniformly over its
scanned rectangle (stage frame). A typical frame (100 pA, 1 µs, 1024², 2 µm field, ~1.05 s)
delivers 1e-10 A · 1.05 s / 1.602e-19 C ≈ 6.5e8 electrons over 4e-12 m², i.e. ≈ 1.6e20 e/m²
(≈ 160 e/nm²). Hence the default scales: charging saturates over a few such frames
(5e20 e/m²) and leaks away with ``decay_s``; contamination darkening builds up over tens of
frames (5e21 e/m²) and never decays.

Model (phenomenological):

* ``charge = insulator · (1 − exp(−D_charge/scale))`` with ``D_charge`` the dose with an
  exponential memory ``decay_s``; SE gain = ``1 + brightening · charge``.
* Contamination factor = ``1 − darkening · (1 − exp(−D_total/scale))`` on every material.
* Deflection: the charged area repels the primary beam. The sampled point moves by
  ``−k·grad(G_s * charge)`` (Gaussian smoothing of width ``field_range_m``), with ``k`` set
  so that a fully charged straight edge deflects by ``deflection_m``.

Use per frame (``ExposureHistory`` methods): ``deflect(grid, t, insulator=fn)`` before
rendering, ``modulate(signal, insulator_map, grid, t, "se"|"bse")`` after rendering, and
``record(grid, electrons_per_m2, t_end)`` after the frame. ``dose_at`` / ``dose_on_grid`` and
the pure functions ``charge_state``, ``charging_gain``, ``contamination_factor`` and
``deflection`` expose the pieces.

Evaluation is cheap: rectangles are culled by bounding box, near-identical rectangles are
merged (exactly, for both doses), and doses are evaluated on a coarse grid (64² by default)
with anti-aliased rectangle edges, then interpolated bilinearly to the frame; so the edge of
a dose rectangle is soft over one coarse cell (1/64 of the field).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from drivers.validate import real

from .scan import SampleGrid


def _nonneg(cls: str, name: str, v: float, positive: bool = False) -> None:
    if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
        raise ValueError(f"{cls}.{name} = {v}: must be a finite number {'>' if positive else '>='} 0")


@dataclass(frozen=True)
class ChargingConfig:
    """Charging of insulators: SE brightening and beam deflection (dose in e/m²)."""

    enabled: bool = True
    brightening: float = 0.5
    dose_scale_e_per_m2: float = 5e20
    decay_s: float = 60.0
    deflection_m: float = 5e-9
    field_range_m: float = 0.5e-6

    def __post_init__(self) -> None:
        _nonneg("ChargingConfig", "brightening", self.brightening)
        _nonneg("ChargingConfig", "deflection_m", self.deflection_m)
        for name in ("dose_scale_e_per_m2", "decay_s", "field_range_m"):
            _nonneg("ChargingConfig", name, getattr(self, name), positive=True)


@dataclass(frozen=True)
class ContaminationConfig:
    """Hydrocarbon contamination: dose-dependent darkening (dose in e/m²)."""

    enabled: bool = True
    darkening: float = 0.3
    dose_scale_e_per_m2: float = 5e21

    def __post_init__(self) -> None:
        if not (math.isfinite(self.darkening) and 0.0 <= self.darkening < 1.0):
            raise ValueError(f"ContaminationConfig.darkening = {self.darkening}: must be in [0, 1)")
        _nonneg("ContaminationConfig", "dose_scale_e_per_m2", self.dose_scale_e_per_m2, positive=True)


#: Fraction of the SE contamination darkening that BSE images show.
BSE_CONTAMINATION_WEIGHT = 0.2

# Rectangle table columns.
_CX, _CY, _HW, _HH, _COS, _SIN, _CONTAM, _CHARGE, _TREF = range(9)


class ExposureHistory:
    """Scanned rectangles with their areal doses, in stage coordinates.

    Rectangles whose centres agree within ``merge_tolerance`` × the smaller half-size, whose
    half-sizes agree within that fraction and whose rotations agree within 1 mrad are merged;
    beyond ``max_rects`` the rectangle with the least dose is dropped.
    """

    def __init__(self, charging: ChargingConfig | None = None,
                 contamination: ContaminationConfig | None = None,
                 merge_tolerance: float = 0.02, max_rects: int = 1024) -> None:
        self.charging = charging if charging is not None else ChargingConfig()
        self.contamination = contamination if contamination is not None else ContaminationConfig()
        self.merge_tolerance = merge_tolerance
        self.max_rects = max_rects
        self._rects = np.zeros((0, 9))
        self.last_t_s = -math.inf

    def __len__(self) -> int:
        return len(self._rects)

    def record_rect(self, center_m: tuple[float, float], size_m: tuple[float, float],
                    rotation_rad: float, electrons_per_m2: float, t_s: float) -> None:
        """Record a scanned rectangle (centre, (width along the rotated x axis, height),
        rotation) that received ``electrons_per_m2`` ending at instrument time ``t_s``."""
        cx, cy = real("center_m[x]", center_m[0]), real("center_m[y]", center_m[1])
        w = real("size_m[width]", size_m[0], (0.0, math.inf))
        h = real("size_m[height]", size_m[1], (0.0, math.inf))
        rot = real("rotation_rad", rotation_rad) % math.pi
        dose = real("electrons_per_m2", electrons_per_m2, (0.0, math.inf))
        t = real("t_s", t_s)
        if t < self.last_t_s:
            raise ValueError(f"t_s = {t}: must be >= the previous record time {self.last_t_s}")
        self.last_t_s = t
        if dose == 0.0 or w == 0.0 or h == 0.0:
            return
        tau = self.charging.decay_s
        r = self._rects
        tol = self.merge_tolerance * 0.5 * min(w, h)
        same = ((np.abs(r[:, _CX] - cx) <= tol) & (np.abs(r[:, _CY] - cy) <= tol)
                & (np.abs(r[:, _HW] - 0.5 * w) <= tol) & (np.abs(r[:, _HH] - 0.5 * h) <= tol)
                & (np.abs(np.arctan2(r[:, _SIN], r[:, _COS]) % math.pi - rot) <= 1e-3))
        hit = np.flatnonzero(same)
        if hit.size:
            k = hit[0]
            r[k, _CONTAM] += dose
            r[k, _CHARGE] = r[k, _CHARGE] * math.exp(-(t - r[k, _TREF]) / tau) + dose
            r[k, _TREF] = t
            return
        row = np.array([cx, cy, 0.5 * w, 0.5 * h, math.cos(rot), math.sin(rot), dose, dose, t])
        self._rects = np.vstack([r, row[None, :]])
        if len(self._rects) > self.max_rects:
            self._rects = np.delete(self._rects, int(np.argmin(self._rects[:, _CONTAM])), axis=0)

    def record(self, grid: SampleGrid, electrons_per_m2: float, t_s: float) -> None:
        """Record the rectangle scanned by ``grid`` (nominal field + frame-constant shift) with
        areal dose ``electrons_per_m2``, at instrument time ``t_s`` (e.g. the frame end)."""
        ny, nx = grid.shape_px
        p = grid.pixel_size_m
        self.record_rect(grid.center_m, (nx * p, ny * p), grid.rotation_rad, electrons_per_m2, t_s)

    def _select(self, xmin: float, xmax: float, ymin: float, ymax: float, t: float) -> np.ndarray:
        r = self._rects
        if not len(r):
            return r
        ext_x = np.abs(r[:, _COS]) * r[:, _HW] + np.abs(r[:, _SIN]) * r[:, _HH]
        ext_y = np.abs(r[:, _SIN]) * r[:, _HW] + np.abs(r[:, _COS]) * r[:, _HH]
        keep = ((r[:, _CX] + ext_x >= xmin) & (r[:, _CX] - ext_x <= xmax)
                & (r[:, _CY] + ext_y >= ymin) & (r[:, _CY] - ext_y <= ymax)
                & (r[:, _TREF] <= t))
        return r[keep]

    def dose_at(self, x_m: np.ndarray, y_m: np.ndarray, t_s: float,
                edge_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(charging dose with decay, contamination dose without decay) in e/m² at the points
        (x_m, y_m), counting records made at or before ``t_s``. ``edge_m`` > 0 softens the
        rectangle edges linearly over that width (anti-aliasing on coarse grids)."""
        x, y = np.broadcast_arrays(np.asarray(x_m, dtype=np.float64),
                                   np.asarray(y_m, dtype=np.float64))
        t = real("t_s", t_s)
        e = real("edge_m", edge_m, (0.0, math.inf))
        charge = np.zeros(x.shape)
        contam = np.zeros_like(charge)
        if not len(self._rects) or not charge.size:
            return charge, contam
        pad = 0.5 * e
        rects = self._select(float(x.min()) - pad, float(x.max()) + pad,
                             float(y.min()) - pad, float(y.max()) + pad, t)
        decay = np.exp(-(t - rects[:, _TREF]) / self.charging.decay_s)
        xf, yf = x.reshape(1, -1), y.reshape(1, -1)
        cf, nf = charge.reshape(-1), contam.reshape(-1)
        chunk = max(1, (1 << 15) // max(xf.size, 1))          # rectangles per pass
        for k0 in range(0, len(rects), chunk):
            r = rects[k0:k0 + chunk]
            col = [r[:, i:i + 1] for i in range(9)]
            dx, dy = xf - col[_CX], yf - col[_CY]
            u = np.abs(dx * col[_COS] + dy * col[_SIN])
            v = np.abs(dy * col[_COS] - dx * col[_SIN])
            if e > 0:
                cov = np.clip((col[_HW] - u) / e + 0.5, 0.0, 1.0)
                cov *= np.clip((col[_HH] - v) / e + 0.5, 0.0, 1.0)
            else:
                cov = ((u <= col[_HW]) & (v <= col[_HH])).astype(np.float64)
            # einsum without BLAS: deterministic and free of BLAS thread contention.
            nf += np.einsum("r,rp->p", r[:, _CONTAM], cov, optimize=False)
            cf += np.einsum("r,rp->p", r[:, _CHARGE] * decay[k0:k0 + chunk], cov, optimize=False)
        return charge, contam

    def dose_on_grid(self, grid: SampleGrid, t_s: float,
                     coarse_px: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(charging, contamination) doses (float32, frame shape) for the frame ``grid``,
        evaluated on at most ``coarse_px``² points and interpolated bilinearly."""
        ny, nx = grid.shape_px
        xmin, xmax, ymin, ymax = grid.bbox_m()
        if not len(self._select(xmin, xmax, ymin, ymax, real("t_s", t_s))):
            z = np.zeros((ny, nx), dtype=np.float32)
            return z, z.copy()
        rows, cols, xc, yc = coarse_points(grid, coarse_px)
        charge, contam = self.dose_at(xc, yc, t_s, edge_m=_coarse_step_m(grid, rows, cols))
        return upsample(charge, rows, cols, (ny, nx)), upsample(contam, rows, cols, (ny, nx))

    def overlaps(self, grid: SampleGrid, t_s: float) -> bool:
        """Whether any recorded rectangle (made at or before ``t_s``) touches the frame."""
        return bool(len(self._select(*grid.bbox_m(), real("t_s", t_s))))

    def deflect(self, grid: SampleGrid, t_s: float,
                insulator: Callable[[SampleGrid], np.ndarray] | None = None,
                coarse_px: int = 64) -> SampleGrid:
        """``grid`` with the sampled points displaced by charging (see ``deflection``).

        ``insulator`` maps a (coarse) SampleGrid to the insulator fraction at its points,
        e.g. ``lambda g: specimen.render(g).insulator``; it is only called when charge is
        present. Without it the specimen counts as conductive and ``grid`` is returned as is.
        """
        cfg = self.charging
        if (insulator is None or not cfg.enabled or cfg.deflection_m == 0.0
                or not self.overlaps(grid, t_s)):
            return grid
        coarse = coarse_grid(grid, coarse_px)
        rows, cols = _coarse_positions(grid, coarse_px)
        step = _coarse_step_m(grid, rows, cols)
        charge_dose, _ = self.dose_at(coarse.x_m, coarse.y_m, t_s, edge_m=step)
        q = charge_state(charge_dose, np.asarray(insulator(coarse), dtype=np.float32), cfg)
        dx, dy = deflection(q, grid, cfg)
        extra = float(np.hypot(dx, dy).max())
        if extra < 1e-3 * grid.pixel_size_m:          # invisible: skip the full-size pass
            return grid
        return dataclasses.replace(
            grid, x_m=grid.x_m + upsample(dx, rows, cols, grid.shape_px, np.float64),
            y_m=grid.y_m + upsample(dy, rows, cols, grid.shape_px, np.float64),
            slack_m=grid.slack_m + extra, residual_m=grid.residual_m + extra)

    def modulate(self, signal: np.ndarray, insulator: np.ndarray | float, grid: SampleGrid,
                 t_s: float, kind: str = "se", coarse_px: int = 64) -> np.ndarray:
        """Signal yield map × contamination factor × charging gain (float32, frame shape).

        ``kind`` "se": full effect. "bse": charging gain 1 (charging changes SE escape and
        collection, not backscattering) and ``BSE_CONTAMINATION_WEIGHT`` × the SE darkening
        (a thin carbon film absorbs low-energy SEs, not keV BSEs). Returns ``signal`` itself
        (not a copy) when no recorded exposure touches the frame.
        """
        if kind not in ("se", "bse"):
            raise ValueError(f"kind = {kind!r}: must be 'se' or 'bse'")
        if not self.overlaps(grid, t_s):
            return signal
        rows, cols = _coarse_positions(grid, coarse_px)
        _, _, xc, yc = coarse_points(grid, coarse_px)
        charge_dose, contam_dose = self.dose_at(xc, yc, t_s, edge_m=_coarse_step_m(grid, rows, cols))
        darkening = 1.0 - contamination_factor(contam_dose, self.contamination)
        if kind == "bse":
            darkening *= np.float32(BSE_CONTAMINATION_WEIGHT)
        keep = 1.0 - darkening                                  # coarse contamination factor
        sig = np.asarray(signal, dtype=np.float32)
        out = upsample(keep, rows, cols, grid.shape_px)
        out *= sig
        ins = np.asarray(insulator, dtype=np.float32)
        if kind == "se" and self.charging.enabled and self.charging.brightening > 0 and ins.any():
            # signal·keep·(1 + b·ins·sat) = out + signal·ins·(keep·b·sat)
            extra = keep * (np.float32(self.charging.brightening)
                            * charge_state(charge_dose, 1.0, self.charging))
            if extra.any():
                boost = upsample(extra, rows, cols, grid.shape_px)
                boost *= ins
                boost *= sig
                out += boost
        return out


def _coarse_positions(grid: SampleGrid, coarse_px: int) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = grid.shape_px
    return (np.linspace(0.0, ny - 1.0, min(ny, int(coarse_px))),
            np.linspace(0.0, nx - 1.0, min(nx, int(coarse_px))))


def _coarse_step_m(grid: SampleGrid, rows: np.ndarray, cols: np.ndarray) -> float:
    dr = rows[1] - rows[0] if len(rows) > 1 else 1.0
    dc = cols[1] - cols[0] if len(cols) > 1 else 1.0
    return max(dr, dc) * grid.pixel_size_m


def coarse_grid(grid: SampleGrid, coarse_px: int = 64) -> SampleGrid:
    """A SampleGrid of at most ``coarse_px``² points spanning ``grid``'s field edge to edge
    (nominal + frame-constant shift; pixel size = the coarse spacing)."""
    rows, cols = _coarse_positions(grid, coarse_px)
    _, _, xc, yc = coarse_points(grid, coarse_px)
    dr = rows[1] - rows[0] if len(rows) > 1 else 1.0
    dc = cols[1] - cols[0] if len(cols) > 1 else 1.0
    col = (grid.col_step_m[0] * dc, grid.col_step_m[1] * dc)
    row = (grid.row_step_m[0] * dr, grid.row_step_m[1] * dr)
    return SampleGrid(
        x_m=xc, y_m=yc, origin_m=grid.origin_m, col_step_m=col, row_step_m=row,
        slack_m=math.hypot(*grid.shift_m), pixel_size_m=grid.pixel_size_m * max(dr, dc),
        shift_m=grid.shift_m, residual_m=0.0, rotation_rad=grid.rotation_rad,
        t_start_s=grid.t_start_s, t_end_s=grid.t_end_s)


def coarse_points(grid: SampleGrid, coarse_px: int = 64
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coarse sub-grid of a frame: (row positions, column positions, x_m, y_m).

    Positions are fractional pixel indices spanning the frame edge to edge; x_m/y_m are the
    corresponding specimen points (nominal + frame-constant shift), shape (len(rows), len(cols)).
    """
    rows, cols = _coarse_positions(grid, coarse_px)
    ox = grid.origin_m[0] + grid.shift_m[0]
    oy = grid.origin_m[1] + grid.shift_m[1]
    xc = ox + rows[:, None] * grid.row_step_m[0] + cols[None, :] * grid.col_step_m[0]
    yc = oy + rows[:, None] * grid.row_step_m[1] + cols[None, :] * grid.col_step_m[1]
    return rows, cols, xc, yc


def _interp_weights(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    full = np.arange(n, dtype=np.float64)
    idx = np.clip(np.searchsorted(pos, full, side="right") - 1, 0, max(len(pos) - 2, 0))
    if len(pos) < 2:
        return idx, idx, np.zeros(n)
    f = (full - pos[idx]) / (pos[idx + 1] - pos[idx])
    return idx, idx + 1, np.clip(f, 0.0, 1.0)


def upsample(coarse: np.ndarray, rows: np.ndarray, cols: np.ndarray,
             shape_px: tuple[int, int], dtype: type = np.float32) -> np.ndarray:
    """Bilinear interpolation (``dtype``) of values at (rows, cols) onto the full frame.

    Columns are interpolated on the coarse rows first; the full-size pass then only copies
    whole rows (contiguous) and does one multiply-add.
    """
    c = np.asarray(coarse, dtype=dtype)
    j0, j1, fc = _interp_weights(cols, shape_px[1])
    wide = c[:, j0]
    wide += (c[:, j1] - wide) * fc.astype(dtype)[None, :]   # (gy, nx)
    i0, _, fr = _interp_weights(rows, shape_px[0])
    step = np.zeros_like(wide)
    np.subtract(wide[1:], wide[:-1], out=step[:-1])          # (gy, nx) row differences
    out = np.empty((shape_px[0], shape_px[1]), dtype=dtype)
    bounds = np.flatnonzero(np.diff(i0)) + 1                 # full rows where i0 changes
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(i0)]):
        k = i0[a]
        np.multiply.outer(fr[a:b].astype(dtype), step[k], out=out[a:b])
        out[a:b] += wide[k]
    return out


def charge_state(charge_dose: np.ndarray, insulator: np.ndarray | float,
                 cfg: ChargingConfig) -> np.ndarray:
    """Charge saturation in [0, 1]: insulator fraction × (1 − exp(−dose/scale))."""
    if not cfg.enabled:
        return np.zeros_like(np.asarray(charge_dose, dtype=np.float32))
    d = np.asarray(charge_dose, dtype=np.float32)
    return (np.asarray(insulator, dtype=np.float32)
            * -np.expm1(-d / np.float32(cfg.dose_scale_e_per_m2)))


def charging_gain(charge_dose: np.ndarray, insulator: np.ndarray | float,
                  cfg: ChargingConfig) -> np.ndarray:
    """Multiplicative SE-yield gain (>= 1) of charged insulators."""
    return 1.0 + np.float32(cfg.brightening) * charge_state(charge_dose, insulator, cfg)


def contamination_factor(contam_dose: np.ndarray, cfg: ContaminationConfig) -> np.ndarray:
    """Multiplicative signal factor in (1 − darkening, 1] from contamination."""
    d = np.asarray(contam_dose, dtype=np.float32)
    if not cfg.enabled:
        return np.ones_like(d)
    return 1.0 + np.float32(cfg.darkening) * np.expm1(-d / np.float32(cfg.dose_scale_e_per_m2))


def deflection(charge: np.ndarray, grid: SampleGrid,
               cfg: ChargingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Displacement (dx_m, dy_m), stage frame, of the sampled point caused by charge.

    ``charge`` (from ``charge_state``) samples the frame of ``grid`` uniformly edge to edge
    and may be coarse (e.g. from ``coarse_points``); the output has its shape. Add it to the
    sampled coordinates (upsample first if coarse). The beam is pushed away from charge.
    """
    q = np.asarray(charge, dtype=np.float64)
    if not cfg.enabled or cfg.deflection_m == 0.0 or not q.any():
        return np.zeros_like(q), np.zeros_like(q)
    ny, nx = grid.shape_px
    gy, gx = q.shape
    sy = (ny - 1) / max(gy - 1, 1) * grid.pixel_size_m        # spacing of the samples (m)
    sx = (nx - 1) / max(gx - 1, 1) * grid.pixel_size_m
    s = cfg.field_range_m
    smooth = gaussian_filter(q, sigma=(s / sy, s / sx), mode="nearest", truncate=3.0)
    g_row, g_col = np.gradient(smooth, sy, sx)                # d/d(row metre), d/d(col metre)
    k = -cfg.deflection_m * s * math.sqrt(2.0 * math.pi)
    p = grid.pixel_size_m
    cu = (grid.col_step_m[0] / p, grid.col_step_m[1] / p)
    ru = (grid.row_step_m[0] / p, grid.row_step_m[1] / p)
    return (k * (g_col * cu[0] + g_row * ru[0]), k * (g_col * cu[1] + g_row * ru[1]))
